"""The DAG engine: validate a DAG, analyze its inputs, plan its steps, execute the plan.

    dag = validate(parse_dag(data))
    analysis = analyze(dag, store)
    the_plan = plan(dag, analysis)
    report = execute(the_plan, store, results, SyncExecutor(), temp_root=tmp)

Pure Python plus ffmpeg: no web framework and no Redis here; the store and the result index
are handed in (see `interfaces`).
"""

from l1web.engine.analysis import analysis_id, analyze
from l1web.engine.dag import Dag, Node, parse_dag, validate
from l1web.engine.errors import DagError, EngineError, MediaError, StepError
from l1web.engine.execute import Executor, SyncExecutor, execute
from l1web.engine.media import MediaInfo, detect
from l1web.engine.plan import cache_id, plan
from l1web.engine.steps import run_step
from l1web.status import StepStatus

__all__ = [
    "Dag", "DagError", "EngineError", "Executor", "MediaError", "MediaInfo", "Node",
    "StepError", "StepStatus", "SyncExecutor", "analysis_id", "analyze", "cache_id",
    "detect", "execute", "parse_dag", "plan", "run_step", "validate",
]
