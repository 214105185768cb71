"""Models: the default pair's offline fetch, loading any pair, and the backend interface.

Import from the submodules (`autojudge.models.loading`, `.backend`, ...): keeping this
file empty of imports lets the CLI start without loading torch for `--help`.
"""
