"""Example tasks of one's own, as docs/own-task.md writes them: copy one next to you and edit it."""
