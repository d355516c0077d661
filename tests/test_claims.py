"""Every teaching claim of every lesson can fail.

For each lesson, ``course.claims.lesson_NN`` is fed the numbers of a healthy run (the course's own
measurements: the executed quick course and the manifest's records), where every claim must hold,
and then, one claim at a time, a plausible wrong result: the numbers of a degraded run (a model that
did not learn, a sampler that is not as good, intervals that overlap). Each planted result must fail
exactly the claim it targets, with that claim's message. A claim no planted result can fail would be
listed here without a case, and ``test_every_claim_has_a_planted_failure`` counts them.
"""

from __future__ import annotations

import ast
import copy
import inspect
import json
from pathlib import Path

import pytest

from academy_diffusion.course import claims

MANIFEST = json.loads((Path(claims.__file__).parent.parent / "pretrained" / "manifest.json").read_text())


def ival(value, half):
    """An FID-style interval (value, low, high) of half-width ``half``."""
    return (value, value - half, value + half)


def healthy_01():
    return dict(inside={"samples": 0.8125, "noise": 0.0, "real": 0.92}, n=32,
                grey={750: 0.409, 500: 0.266, 250: 0.118, 0: 0.083}, agree={750: 0.0625, 500: 0.53, 250: 0.97},
                T=1000, loss_second_tenth=0.0275, loss_last_tenth=0.0227,
                ema_recorded=copy.deepcopy(MANIFEST["linear"]["ema_check"]))


def healthy_02():
    return dict(fids={("linear", 0.0): ival(59.7, 7.7), ("cosine", 0.0): ival(70.3, 8.0),
                      ("linear", 1.0): ival(43.9, 5.6), ("cosine", 1.0): ival(33.1, 4.8)},
                pair_distance={0.0: 0.261, 1.0: 0.589, "unrelated": 0.69}, inside={"right": 0.73, "wrong": 0.005},
                m=200)


def sampler_row(fid, half, **more):
    return {"fid": fid, "lo": fid - half, "hi": fid + half, **more}


def healthy_03():
    """Lesson 3's live numbers from the quick course; its recorded ones are the manifest's own."""
    recorded = {kind: copy.deepcopy(MANIFEST[kind]["samplers"]) for kind in ("linear", "cfg")}
    return dict(rms={"ddim20": 0.058, "ddpm": 0.723, "unrelated": 0.702}, recorded=recorded, nfe_ratio=50.0,
                wall_ratio=45.8)


def healthy_04():
    real_hist = [0.099, 0.112, 0.099, 0.102, 0.097, 0.090, 0.099, 0.104, 0.098, 0.100]
    hist = [0.064, 0.130, 0.094, 0.100, 0.098, 0.080, 0.090, 0.100, 0.102, 0.142]
    return dict(accuracy={0: 0.088, 1: 0.926, 3: 1.0, 5: 1.0, 7: 1.0, 10: 1.0},
                diversity={0: 2.23, 1: 1.10, 3: 0.667, 5: 0.615, 7: 0.590, 10: 0.580}, n=500, hist=hist,
                real_hist=real_hist)


def healthy_05():
    return dict(fids={0: ival(134.1, 9), 1: ival(19.5, 2.5), 2: ival(28.2, 3), 3: ival(58.5, 5), 5: ival(101, 7),
                      7: ival(126.5, 8), 10: ival(150.3, 9)}, best_w=1,
                accuracy={0: 0.088, 1: 0.926, 2: 1.0, 3: 1.0, 5: 1.0, 7: 1.0, 10: 1.0}, n=500, guided_w=2.0)


def healthy_06():
    levels = [1, 6, 21, 51, 101, 201, 351, 501, 651, 801, 951, 1000]
    ratios = [1.06, 1.02, 1.01, 1.01, 1.01, 1.02, 1.06, 1.11, 1.38, 2.0, 6.78, 7.55]
    healthy_err = [0.01, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.5]
    return dict(loss_end={"healthy": 0.0227, "dead": 0.0238}, loss_ratio=dict(zip(levels, ratios, strict=True)),
                x0_error={"healthy": dict(zip(levels, healthy_err, strict=True)),
                          "dead": {k: e * r ** 0.5 for k, e, r in zip(levels, healthy_err, ratios, strict=True)}},
                fids={"healthy": ival(43.9, 5.6), "dead": ival(1702, 40)},
                health={"healthy": 0.1918, "dead": 5e-16}, bar=0.1891,
                blend=[(0.0, 0.1918, ival(64, 13)), (0.1, 0.1896, ival(119, 16)), (0.25, 0.1573, ival(1037, 33)),
                       (0.5, 0.0252, ival(3557, 46)), (1.0, 5e-16, None)])


def healthy_07():
    errors = {("ddim", 5): 0.165, ("ddim", 10): 0.088, ("ddim", 20): 0.048, ("ddim", 50): 0.021,
              ("dpm++2m", 5): 0.120, ("dpm++2m", 10): 0.051, ("dpm++2m", 20): 0.021}
    fid_values = {("ddim", 5): 41.9, ("ddim", 10): 42.5, ("ddim", 20): 43.4, ("ddim", 50): 44.5,
                  ("dpm++2m", 5): 42.3, ("dpm++2m", 10): 43.7, ("dpm++2m", 20): 43.9}
    return dict(results={k: {"error": e, "fid": fid_values[k], "lo": fid_values[k] - 6, "hi": fid_values[k] + 6,
                             "accuracy": 1.0 if k[1] < 20 else 0.997} for k, e in errors.items()})


def healthy_08():
    return dict(fids={"w=1": ival(19.5, 4.5), "w=2": ival(28.2, 6), "w=3": ival(58.5, 8.4), "w=0": ival(134, 14),
                      "w=10": ival(150, 17), "w=1, stamped": ival(29.9, 6.2)},
                stamp_cost=ival(10.4, 2.5), real_fids=[11.4, 13.0, 14.3, 15.2, 16.7], block=ival(20.1, 4.5),
                pr={"w=1": {"precision": (0.85, 0.90), "recall": (0.80, 0.85)},
                    "w=2": {"precision": (0.90, 0.94), "recall": (0.70, 0.76)},
                    "w=3": {"precision": (0.93, 0.97), "recall": (0.45, 0.52)},
                    "w=0": {"precision": (0.55, 0.62), "recall": (0.85, 0.90)},
                    "w=10": {"precision": (0.88, 0.93), "recall": (0.10, 0.15)},
                    "w=1, stamped": {"precision": (0.70, 0.76), "recall": (0.78, 0.83)}},
                rater_agrees=False,
                kid_by_n={100: {"fid": (83.0, 1.5), "kid": (0.025, 0.004)},
                          250: {"fid": (33.1, 0.5), "kid": (0.024, 0.002)},
                          1000: {"fid": (7.3, 0.2), "kid": (0.024, 0.001)}},
                coverage={"w=1": 38, "w=2": 36, "w=3": 30, "w=0": 39, "w=10": 22, "w=1, stamped": 38},
                real_covered=[37, 38, 38, 39, 40], guided="w=2")


def healthy_09():
    def error(name, values):
        return {(name, k): v for k, v in zip((1, 2, 4, 8, 16, 32), values, strict=True)}

    e = {**error("flow matching, Euler", [0.485, 0.358, 0.227, 0.136, 0.079, 0.048]),
         **error("diffusion, DDIM", [0.791, 0.783, 0.258, 0.151, 0.082, 0.041]),
         **{("flow matching, Heun", k): v for k, v in zip((2, 4, 8, 16, 32), [0.805, 0.431, 0.188, 0.072, 0.027],
                                                          strict=True)}}
    recorded = {k: v for k, v in MANIFEST["flow_cfg"]["metrics"].items() if k.startswith("w")}
    return dict(error=e, bend={"flow": 0.080, "ddim_walked": 0.200, "ddim_flow_coords": 0.078},
                sweep=copy.deepcopy(MANIFEST["flow"]["nfe_sweep"]), recorded=recorded, accuracy_w1=0.98, n_w=100)


def healthy_10():
    return dict(n=1000, floor=ival(7.6, 3.2), baseline=7.3, latent=ival(152.3, 10.4), pixel=ival(59.7, 7.7),
                train_speedup=4.9, sample_speedup=5.5, flop_ratio=12.9,
                race={"budget": 8, "n": 300, "pixel": ival(2315, 80), "latent": ival(1034, 60)},
                recorded_race=copy.deepcopy(MANIFEST["latent"]["equal_time"]), scale=1.114,
                scale_mistakes={"right": ival(152.3, 10.4), "none": ival(150.8, 10.4), "sd": ival(410.9, 15.5)})


def healthy_11():
    return dict(metrics=copy.deepcopy(MANIFEST["distilled"]["metrics"]),
                teacher_recorded=MANIFEST["cfg"]["metrics"]["w2"],
                guided_again=ival(160, 12), as_trained=ival(45, 6), w_new=3.0, n_live=300)


def at(*path):
    """A planted change: ``at("a", "b")(value)`` sets kwargs["a"]["b"] = value."""
    def setter(value):
        def plant(kwargs):
            target = kwargs
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        plant.describe = f"{'/'.join(map(str, path))} = {value}"
        return plant
    return setter


def both(*plants):
    """Several planted changes at once (a degraded run moves more than one number)."""
    def plant(kwargs):
        for p in plants:
            p(kwargs)
    plant.describe = "; ".join(p.describe for p in plants)
    return plant


def sweep_point(method, nfe, fid, half=4.0):
    plant = at("sweep", method, str(nfe))({"fid": fid, "lo": fid - half, "hi": fid + half, "n": 2000})
    plant.describe = f"recorded {method} at {nfe} NFE: FID {fid} ± {half}"
    return plant


# lesson -> (healthy numbers, [(the claim's message starts with, planted wrong result), ...])
CASES = {
    "03": (healthy_03, [
        ("DDIM-20 reproduces DDIM-1000", at("rms", "ddim20")(0.40)),  # 20 steps too coarse for the ODE
        ("DDPM is not paired with DDIM", at("rms", "ddpm")(0.30)),
        ("on the unconditional model the samplers rank", at("recorded", "linear", "ddpm-1000")(
            sampler_row(37.0, 2.2))),  # the 1,000 steps buy nothing
        ("on the unconditional model the samplers rank", at("recorded", "linear", "ddim-20-eta1")(
            sampler_row(52.0, 2.2))),
        ("on the guided model", at("recorded", "cfg", "ddpm-1000")(sampler_row(25.0, 2.0))),  # DDPM as good
        ("on the guided model", at("recorded", "cfg", "ddim-20-eta1")(sampler_row(25.0, 2.0))),
        ("fresh noise trades variety for realism", at("recorded", "cfg", "ddim-20-eta1", "recall")(0.72)),
        ("fresh noise trades variety for realism", at("recorded", "linear", "ddim-20-eta1", "precision")(0.75)),
        ("wall-clock speed-up", at("wall_ratio")(8.0)),  # DDIM's steps would cost 6x DDPM's
    ]),
    "01": (healthy_01, [
        ("samples fall among real digits", at("inside", "samples")(0.55)),  # a model that has not learned
        ("samples fall among real digits", at("inside", "noise")(0.2)),  # a manifold too loose to mean anything
        ("x̂0 at 3T/4 is a grey average", at("grey", 750)(0.07)),
        ("x̂0 commits as k falls", at("agree", 250)(0.05)),
        ("loss keeps falling", at("loss_last_tenth")(0.031)),  # a learning rate too high: the curve swings up
        ("recorded: sampling from the EMA", at("ema_recorded", "ema", "hi")(229.0)),  # intervals overlap
    ]),
    "02": (healthy_02, [
        ("on these unconditional models the stochastic sampler", at("fids", ("linear", 1.0))(ival(56.0, 6.0))),
        ("η = 0 pairs the schedules' samples", at("pair_distance", 0.0)(0.45)),
        ("η = 0 pairs the schedules' samples", at("pair_distance", 1.0)(0.30)),
        ("the wrong schedule loses realism", at("inside", "wrong")(0.66)),
    ]),
    "04": (healthy_04, [
        ("guidance raises accuracy", both(*(at("accuracy", w)(0.94) for w in (3, 5, 7)))),
        ("strong guidance costs diversity", at("diversity", 10)(0.65)),
        ("unguided sampling covers every digit", at("hist", 0)(0.03)),
    ]),
    "05": (healthy_05, [
        ("FID is a V in w", at("fids", 10)(ival(24.0, 3))),  # FID keeps falling: no V
        ("FID is a V in w", at("fids", 0)(ival(22.0, 3))),
        ("FID's favourite misreads digits", at("accuracy", 1)(0.995)),
    ]),
    "06": (healthy_06, [
        ("the dead model's loss fell too", at("loss_end", "dead")(0.05)),
        ("it pays at the noisiest levels", at("loss_ratio", 351)(9.0)),  # the failure sits mid-range instead
        ("it pays at the noisiest levels", at("x0_error", "dead", 1000)(2.0)),
        ("its samples are worse", at("fids", "dead")(ival(50.0, 7))),
        ("the check falls as the embedding weakens", at("blend", 2)((0.25, 0.1900, ival(1037, 33)))),
        ("the check falls as the embedding weakens", at("bar")(1e-17)),
        ("a smoke alarm, not a quality gauge", at("blend", 1)((0.1, 0.1896, ival(70, 14)))),
        ("a smoke alarm, not a quality gauge", at("blend", 1)((0.1, 0.1850, ival(119, 16)))),
    ]),
    "07": (healthy_07, [
        ("DPM-Solver++ integrates more accurately", at("results", ("dpm++2m", 10), "error")(0.06)),
        ("FID is flat from 10 NFE on", at("results", ("dpm++2m", 10))(
            {"error": 0.051, "fid": 70.0, "lo": 64.0, "hi": 76.0, "accuracy": 1.0})),
        ("accuracy from 10 steps on", at("results", ("ddim", 10), "accuracy")(0.93)),
    ]),
    "08": (healthy_08, [
        ("FID sees the stamp", at("stamp_cost")(ival(1.0, 2.0))),
        ("yet FID prefers the stamped set", at("fids", "w=1, stamped")(ival(60.0, 4))),
        ("yet FID prefers the stamped set", at("pr", "w=1, stamped", "recall")((0.44, 0.50))),
        ("the careful rater", at("rater_agrees")(True)),
        ("how a real set is drawn moves FID", at("block")(ival(14.0, 4.5))),
        ("KID does not drift", at("kid_by_n", 100, "kid")((0.040, 0.004))),  # a biased estimator would
        ("KID does not drift", at("kid_by_n", 100, "fid")((9.0, 1.5))),
        ("strong guidance loses modes", at("coverage", "w=10")(38)),
        ("precision/recall separate the failures", at("pr", "w=10", "recall")((0.72, 0.78))),
        ("precision/recall separate the failures", at("pr", "w=0", "precision")((0.91, 0.95))),
    ]),
    "09": (healthy_09, [
        ("Heun pays off only with small steps", at("error", ("flow matching, Heun", 32))(0.045)),
        ("Euler converges", at("error", ("flow matching, Euler", 32))(0.09)),
        ("per network call", at("error", ("diffusion, DDIM", 16))(0.03)),
        ("the flow paths bend less", at("bend", "ddim_walked")(0.10)),
        ("flow matching (Euler) beats DDIM", sweep_point("flow-euler", 8, 93.0)),
        ("against DPM-Solver++ it loses at 8 NFE", sweep_point("flow-euler", 32, 38.0)),
        ("the flow model's best FID", sweep_point("dpm++2m", 16, 20.0)),
        ("guidance on velocities raises accuracy", at("recorded", "w2")({"accuracy": 0.965, "n": 10000})),
        ("the conditional model follows its labels", at("accuracy_w1")(0.16)),
    ]),
    "10": (healthy_10, [
        ("the latent model's FID", at("latent")(ival(9.0, 3))),  # would put the decoder at fault
        ("at equal epochs the latent model is worse", at("latent")(ival(62.0, 8))),
        ("the decoder costs little", at("floor")(ival(20.0, 3))),
        ("the latent space is faster", at("sample_speedup")(1.1)),
        ("one latent network call costs", at("flop_ratio")(3.9)),
        ("recorded, about", at("recorded_race", "latent", "hi")(170.0)),
        ("at equal training time", at("race", "latent")(ival(2300, 80))),
        ("forgetting the scale costs little", at("scale_mistakes", "none")(ival(400.0, 15))),
        ("decoding with Stable Diffusion's factor", at("scale_mistakes", "sd")(ival(155.0, 10))),
    ]),
    "11": (healthy_11, [
        ("at 1 call the student beats", at("metrics", "student-1")(
            {"nfe": 1, "fid": 6000.0, "lo": 5900.0, "hi": 6100.0, "recall": 0.0, "accuracy": 0.1})),
        ("at 4 calls the student beats", at("metrics", "student-4", "hi")(45.0)),
        ("the 4-step student's FID", at("teacher_recorded")({"fid": 12.0, "sampler": "ddim-20", "n": 10000})),
        ("the students cover less of the data", at("metrics", "student-4", "recall")(0.71)),
        ("guiding the student again", at("guided_again")(ival(50.0, 6))),
        ("recorded: guided again", at("metrics", "student-4-at-w3", "accuracy")(0.90)),
    ]),
}


def function(lesson):
    return getattr(claims, f"lesson_{lesson}")


def claim_sites(lesson) -> list[tuple[int, int]]:
    """The line ranges, in claims.py, of each claim(...) call in ``lesson_NN``."""
    lines, start = inspect.getsourcelines(function(lesson))
    tree = ast.parse("".join(lines))
    return sorted((start + node.lineno - 1, start + node.end_lineno - 1) for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "claim")


def failing_site(lesson, kwargs) -> tuple[str, int]:
    """Run ``lesson_NN(**kwargs)``, expecting a failed claim: its message and the line in claims.py that raised."""
    with pytest.raises(AssertionError) as failure:
        function(lesson)(**kwargs)
    line = [e.lineno + 1 for e in failure.traceback if Path(str(e.path)).name == "claims.py"
            and e.name == f"lesson_{lesson}"][-1]  # pytest's lineno counts from 0
    return str(failure.value), line


@pytest.mark.parametrize("lesson", sorted(CASES))
def test_a_healthy_run_passes_every_claim(lesson, capsys):
    healthy, _ = CASES[lesson]
    function(lesson)(**healthy())
    printed = capsys.readouterr().out
    assert "✓" in printed and "✗" not in printed, printed


@pytest.mark.parametrize(("lesson", "index"), [(lesson, i) for lesson in sorted(CASES)
                                               for i in range(len(CASES[lesson][1]))], ids=str)
def test_a_planted_wrong_result_fails_its_claim(lesson, index):
    healthy, planted = CASES[lesson]
    message, plant = planted[index]
    kwargs = healthy()
    plant(kwargs)
    text, _ = failing_site(lesson, kwargs)
    assert text.startswith(f"claim does not hold: {message}"), text


@pytest.mark.parametrize("lesson", sorted(CASES))
def test_every_claim_has_a_planted_failure(lesson):
    """Each claim(...) call in ``lesson_NN`` is the one that fails for at least one planted result."""
    healthy, planted = CASES[lesson]
    hit = set()
    for _, plant in planted:
        kwargs = healthy()
        plant(kwargs)
        _, line = failing_site(lesson, kwargs)
        hit |= {site for site in claim_sites(lesson) if site[0] <= line <= site[1]}
    missed = [site for site in claim_sites(lesson) if site not in hit]
    assert not missed, f"lesson {lesson}: no planted result fails the claims at lines {missed} of claims.py"


def test_every_lesson_with_claims_is_covered():
    lessons = sorted(name[len("lesson_"):] for name in dir(claims) if name.startswith("lesson_"))
    assert lessons == sorted(CASES)
