"""`elm bench NAME`: performance measurements reported as rates and ratios, never asserts.

Each bench module provides `add_arguments(parser)`, `run(args) -> dict` (the figures,
printed as JSON with `--json`) and `describe(result) -> str` (the human summary).
"""

BENCHES = {
    "loop": "elm.bench.loop",
    "sandbox": "elm.bench.sandbox",
    "mutation": "elm.bench.mutation",
    "pipeline": "elm.bench.pipeline",
    "sodarace": "elm.bench.sodarace",
    "serve": "elm.bench.serve",
    "finetune": "elm.bench.finetune",
    "scale": "elm.bench.scale",
}
