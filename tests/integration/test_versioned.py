"""The serving side of a published version, in process: a batch runs on the version its
encode pinned, the switch lands between batches, a refused version is never swapped in."""

from __future__ import annotations

from elastiq import contract, modelstore
from tests.integration.test_edge_cloud import SMALL, edge_env  # noqa: F401 - the fixture


def test_switch_between_batches_and_refusal(redis_url, edge_env, redis, monkeypatch):  # noqa: F811 - the pytest fixture imported above
    from elastiq.registry import Registry
    from elastiq.trainspec import parse
    from training import run
    from workers.versioned import VersionedRuntime

    reg = Registry.from_env()
    v1, v2 = (run.run(parse({"dataset": "rotten_tomatoes", "base": "tiny-enc", **SMALL, "seed": s,
                             "student_layers": 0}, reg), reg, store=edge_env)["version"] for s in (1, 2))
    versions = modelstore.Versions(redis, edge_env)
    versions.publish("rt", v1)
    monkeypatch.setenv("ELASTIQ_VERSION_POLL_S", "3600")        # switches only when this test asks
    rt = VersionedRuntime(reg.get("rt"))
    texts = ["a warm, funny film", "dull"]
    ids = rt.encode(texts)                                       # batch A pins v1
    versions.publish("rt", v2)
    assert rt.check_once() == v2 and rt.active.version == v2    # loaded and checked in the background
    outs_a = rt.forward(ids)                                     # ... but batch A still runs on v1
    assert rt.version_of(outs_a) == v1
    outs_b = rt.forward(rt.encode(texts))                        # the next batch runs on v2
    assert rt.version_of(outs_b) == v2
    labels = [o["label"] for o in rt.postprocess(outs_b, {})]
    assert set(labels) <= {"negative", "positive"} and len(labels) == 2
    # a corrupt version made current behind the registry's back: refused, v2 keeps serving
    bad = edge_env / "rt" / "v-bad"
    import shutil

    shutil.copytree(edge_env / "rt" / v1, bad)
    for p in bad.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (bad / "cloud" / "head.json").write_text('{"labels": ["a", "b"], "max_seq_length": 8}')
    redis.set(contract.current_key("rt"), "v-bad")
    assert rt.check_once() is None and "v-bad" in rt.refused and "head.json" in rt.refused["v-bad"]
    assert rt.version_of(rt.forward(rt.encode(texts))) == v2
    assert rt.describe()["version"] == v2 and "v-bad" in rt.describe()["refused"]
