"""Helpers of the scale-out tests (and bench/scale_out.py): generated knowledge bases, and
killing a worker of a Ray Data pool."""

from tests.helpers import ret_jsonl_kb


def generated_kb(folder, n, seed=0):
    """A ReT-JSONL knowledge base of ``n`` passages: one in eight with an image, some with
    a missing image, one with a broken one, some without text."""
    return ret_jsonl_kb(folder, n, seed=seed, image_every=8, words=(2, 24), blank_every=13,
                        image_size=(24, 5, 20))[0]


def kill_a_worker(class_name):
    """``ray.kill`` one live actor of a Ray Data pool (by the UDF's class name), letting Ray
    restart it as it would after a crash; returns its actor id, or None when none is alive.
    (Ray Data keeps no public handle to its pool's actors: the handle comes from the id.)"""
    import ray
    from ray._raylet import ActorID

    for actor_id, info in ray._private.state.actors().items():
        if info["State"] == "ALIVE" and class_name in info["ActorClassName"]:
            worker = ray._private.worker.global_worker
            ray.kill(worker.core_worker.get_actor_handle(ActorID.from_hex(actor_id)),
                     no_restart=False)
            return actor_id
    return None


def restarts(actor_id):
    import ray

    return ray._private.state.actors()[actor_id]["NumRestarts"]
