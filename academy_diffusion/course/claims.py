"""Each lesson's teaching claims, as one function of the numbers the lesson measured.

A lesson measures, prints, plots, and then hands its numbers to its function here, which checks every
sentence of its "Check the claims" section with :func:`~academy_diffusion.course.reporting.claim`
(✓ when it holds, an AssertionError naming the sentence when it does not). Keeping the checks here,
apart from the measuring, lets ``tests/test_claims.py`` feed each claim the numbers of a plausible
wrong run (a degraded model, a sampler that is not as good, an interval that overlaps) and show that
it fails: a claim that cannot fail teaches nothing.

Conventions: an FID comes as ``(value, low, high)``, its 90 % interval (:func:`metrics.fid_interval`);
"apart" means the intervals do not overlap; ``se`` is a binomial standard error.
"""

from __future__ import annotations

import math

from .reporting import claim


def se(p: float, n: int) -> float:
    """Standard error of a proportion ``p`` measured on ``n`` samples (floored at 1/n, so that 0 and 1
    still carry the noise of n draws)."""
    return math.sqrt(max(p * (1 - p), 1 / n) / n)


def apart(low: tuple, high: tuple) -> bool:
    """Whether interval ``low = (value, lo, hi)`` lies wholly below interval ``high``."""
    return low[2] < high[1]


def lesson_01(inside: dict, n: int, grey: dict, agree: dict, T: int, loss_second_tenth: float,
              loss_last_tenth: float, ema_recorded: dict | None = None) -> None:
    """Lesson 1 (a tiny DDPM). ``inside``: the share inside the real manifold of the ``n`` samples, of as many
    pure-noise images and of as many real training digits (the baseline); ``grey[k]``: share of grey pixels
    in x̂0 at level k (k = 0: the finished samples); ``agree[k]``: share of x̂0 at k the classifier reads as
    the final digit; the training loss averaged over its second and its last tenth of steps; ``ema_recorded``:
    the manifest's raw-against-EMA measurement (``{"raw", "ema"}``, each ``{"fid", "lo", "hi", ...}``) or None."""
    bar = inside["real"] - 4 * se(inside["real"], n)
    claim(inside["samples"] > bar and inside["noise"] == 0,
          f"samples fall among real digits: {inside['samples']:.0%} of them inside the real manifold, real digits "
          f"{inside['real']:.0%} (bar: 4 standard errors below, {bar:.0%} at n = {n}), pure noise "
          f"{inside['noise']:.0%}")
    claim(grey[3 * T // 4] > grey[0], f"x̂0 at 3T/4 is a grey average: {grey[3 * T // 4]:.1%} grey pixels vs "
          f"{grey[0]:.1%} in the finished samples")
    claim(agree[T // 4] > agree[3 * T // 4], f"x̂0 commits as k falls: agrees with the final digit "
          f"{agree[3 * T // 4]:.0%} at 3T/4, {agree[T // 4]:.0%} at T/4")
    claim(loss_last_tenth < loss_second_tenth,
          f"loss keeps falling: {loss_second_tenth:.4f} (2nd tenth) -> {loss_last_tenth:.4f} (last tenth)")
    if ema_recorded:
        raw, ema = (ema_recorded[k] for k in ("raw", "ema"))
        claim(ema["hi"] < raw["lo"], f"recorded: sampling from the EMA beats the raw weights of the same "
              f"{ema_recorded['epochs']:g}-epoch run, FID {ema['fid']:.1f} ({ema['lo']:.1f}-{ema['hi']:.1f}) against "
              f"{raw['fid']:.1f} ({raw['lo']:.1f}-{raw['hi']:.1f}), n = {ema_recorded['n']:,}")


def lesson_02(fids: dict, pair_distance: dict, inside: dict, m: int) -> None:
    """Lesson 2 (schedules). ``fids[(schedule, eta)]``: FID intervals of DDIM-20 samples; ``pair_distance``:
    RMS between the two models' samples from one x_T at eta 0 and 1, and between unrelated samples;
    ``inside``: share inside the real manifold of ``m`` samples with the right and the wrong schedule."""
    claim(all(apart(fids[s, 1.0], fids[s, 0.0]) for s in ("linear", "cosine")),
          "on these unconditional models the stochastic sampler (η = 1) beats the deterministic one (η = 0), "
          "intervals apart: " + ", ".join(f"{s} {fids[s, 1.0][0]:.1f} vs {fids[s, 0.0][0]:.1f}"
                                          for s in ("linear", "cosine")))
    claim(pair_distance[0.0] < 0.5 * pair_distance["unrelated"] < pair_distance[1.0],
          f"η = 0 pairs the schedules' samples (RMS {pair_distance[0.0]:.3f}), η = 1 does not "
          f"({pair_distance[1.0]:.3f}; unrelated {pair_distance['unrelated']:.3f})")
    gap = 2 * math.hypot(se(inside["right"], m), se(inside["wrong"], m))
    claim(inside["wrong"] < inside["right"] - gap, f"the wrong schedule loses realism: {inside['wrong']:.0%} vs "
          f"{inside['right']:.0%} inside the real manifold (n = {m}; 2 standard errors of the difference: {gap:.0%})")


def lesson_03(rms: dict, recorded: dict, nfe_ratio: float, wall_ratio: float) -> None:
    """Lesson 3 (DDIM). ``rms``: mean per-sample RMS distance, DDIM-20 vs DDIM-1000 ("ddim20"), DDPM vs
    DDIM-1000 ("ddpm") and unrelated pairs ("unrelated"), from one x_T; ``recorded[kind]``: the manifest's
    sampler comparison of the shipped ``linear`` (unguided) and ``cfg`` (w = 2) models, each sampler's
    ``{"fid", "lo", "hi", ...}`` at n = 5,000 (empty when the models were trained in the run); the NFE ratio
    and the interleaved wall-clock ratio of DDPM-1000 to DDIM-20."""
    claim(rms["ddim20"] < 0.5 * rms["ddpm"],
          f"DDIM-20 reproduces DDIM-1000: RMS {rms['ddim20']:.3f} vs DDPM's {rms['ddpm']:.3f}")
    claim(abs(rms["ddpm"] / rms["unrelated"] - 1) < 0.25,
          f"DDPM is not paired with DDIM: RMS {rms['ddpm']:.3f} vs unrelated {rms['unrelated']:.3f}")
    interval = lambda r: (r["fid"], r["lo"], r["hi"])  # noqa: E731
    if "linear" in recorded:
        r = recorded["linear"]
        deterministic = interval(r["ddim-20"])
        stochastic, ddpm = interval(r["ddim-20-eta1"]), interval(r["ddpm-1000"])
        claim(apart(ddpm, stochastic) and apart(stochastic, deterministic),
              f"on the unconditional model the samplers rank DDPM-1000 ({ddpm[0]:.1f}), DDIM-20 with η = 1 "
              f"({stochastic[0]:.1f}), DDIM-20 with η = 0 ({deterministic[0]:.1f}), intervals apart (n = {r['n']:,} "
              "each): the 50x buys quality here")
    if "cfg" in recorded:
        r = recorded["cfg"]
        deterministic = interval(r["ddim-20"])
        claim(apart(deterministic, interval(r["ddpm-1000"])) and apart(deterministic, interval(r["ddim-20-eta1"])),
              f"on the guided model (w = {r['w']:g}) DDIM-20 with η = 0 is the best of the three: FID "
              f"{deterministic[0]:.1f} against DDPM-1000's {r['ddpm-1000']['fid']:.1f} and η = 1's "
              f"{r['ddim-20-eta1']['fid']:.1f}, intervals apart (n = {r['n']:,} each)")
    if len(recorded) == 2:  # the mechanism: η = 1 trades variety for realism, on both models
        m = recorded["linear"]["n"] // 5  # precision and recall are measured on every fifth sample
        gap = lambda r, key: (r["ddim-20-eta1"][key] - r["ddim-20"][key]) / math.hypot(  # noqa: E731
            se(r["ddim-20-eta1"][key], m), se(r["ddim-20"][key], m))
        shifts = {kind: (gap(r, "precision"), gap(r, "recall")) for kind, r in recorded.items()}
        claim(shifts["linear"][0] > 2 and all(recall < -2 for _, recall in shifts.values()),
              "fresh noise trades variety for realism: with η = 1 recall falls on both models (" + ", ".join(
                  f"{k} {recorded[k]['ddim-20']['recall']:.3f} -> {recorded[k]['ddim-20-eta1']['recall']:.3f}"
                  for k in shifts) + f") and the unconditional model's precision rises "
              f"({recorded['linear']['ddim-20']['precision']:.3f} -> "
              f"{recorded['linear']['ddim-20-eta1']['precision']:.3f})")
    claim(nfe_ratio / 2 < wall_ratio < 2 * nfe_ratio,
          f"wall-clock speed-up {wall_ratio:.0f}x follows the NFE ratio of {nfe_ratio:.0f}x")


def lesson_04(accuracy: dict, diversity: dict, n: int, hist: list, real_hist: list) -> None:
    """Lesson 4 (guidance). ``accuracy[w]`` and ``diversity[w]`` at each w of the grid on ``n`` samples per w;
    ``hist``: the digits the classifier reads in the unguided (w = 0) samples, ``real_hist``: the same for
    ``n`` real training digits."""
    best = max(accuracy[w] for w in (3, 5, 7))
    gap = 2 * math.hypot(se(best, n), se(accuracy[1], n))
    claim(best > accuracy[1] + gap, f"guidance raises accuracy: {accuracy[1]:.3f} at w = 1, {best:.3f} at best of "
          f"w = 3-7 (2 standard errors of the difference = {gap:.3f}, n = {n})")
    claim(diversity[10] < 0.9 * diversity[3],
          f"strong guidance costs diversity: {diversity[3]:.3f} at w = 3, {diversity[10]:.3f} at w = 10")
    ratios = [h / r if r > 0 else float("inf") for h, r in zip(hist, real_hist, strict=True)]  # no real share: no bar
    rarest = min(range(10), key=lambda d: ratios[d])
    claim(min(ratios) > 0.5, f"unguided sampling covers every digit: each gets over half its share among real digits "
          f"(rarest relative to real: digit {rarest}, {hist[rarest]:.1%} against {real_hist[rarest]:.1%})")


def lesson_05(fids: dict, best_w: float, accuracy: dict, n: int, guided_w: float) -> None:
    """Lesson 5 (the FID elbow). ``fids[w]``: FID intervals per w; ``best_w``: the w of the lowest FID;
    ``accuracy[w]``: class accuracy per w on ``n`` samples each; ``guided_w``: the course's w."""
    lo, best, hi = fids[0], fids[best_w], fids[max(fids)]
    claim(apart(best, lo) and apart(best, hi), f"FID is a V in w: {lo[0]:.1f} at w = 0, {best[0]:.1f} at "
          f"w = {best_w:g}, {hi[0]:.1f} at w = {max(fids):g} (intervals apart)")
    gap = 2 * math.hypot(se(accuracy[best_w], n), se(accuracy[guided_w], n))
    claim(accuracy[best_w] < accuracy[guided_w] - gap,
          f"FID's favourite misreads digits: accuracy {accuracy[best_w]:.3f} at its minimum (w = {best_w:g}) "
          f"against {accuracy[guided_w]:.3f} at the course's w = {guided_w:g} (2 standard errors: {gap:.3f}, n = {n})")


def lesson_06(loss_end: dict, loss_ratio: dict, x0_error: dict, fids: dict, health: dict, bar: float,
              blend: list) -> None:
    """Lesson 6 (the dead embedding). ``loss_end``: each model's mean training loss over the last tenth of the
    common steps; ``loss_ratio[k]``: dead / healthy L_simple at level k; ``x0_error[name][k]``: RMS error of
    x̂0; ``fids``: FID intervals of both models' samples; ``health``: the sensitivity check of both; ``bar``:
    the healthy reading minus three times its spread over probes; ``blend``: ``(a, sensitivity, FID
    interval or None)`` of each copy with its embedding blended by a, from a = 0 (intact) up."""
    claim(loss_end["dead"] < 1.5 * loss_end["healthy"], f"the dead model's loss fell too: {loss_end['dead']:.4f} vs "
          f"healthy {loss_end['healthy']:.4f} over the last tenth of the steps")
    worst = max(loss_ratio, key=loss_ratio.get)
    claim(loss_ratio[worst] > 2 and worst > 800 and x0_error["dead"][worst] > 2 * x0_error["healthy"][worst],
          f"it pays at the noisiest levels: loss {loss_ratio[worst]:.1f}x the healthy one's at k = {worst}, where its "
          f"x̂0 is off by RMS {x0_error['dead'][worst]:.2f} (healthy {x0_error['healthy'][worst]:.2f})")
    claim(apart(fids["healthy"], fids["dead"]), f"its samples are worse: FID {fids['dead'][0]:.1f} "
          f"({fids['dead'][1]:.1f}-{fids['dead'][2]:.1f}) vs {fids['healthy'][0]:.1f} ({fids['healthy'][1]:.1f}-"
          f"{fids['healthy'][2]:.1f}), intervals apart")
    sensitivities = [s for _, s, _ in blend]
    strong = [s for a, s, _ in blend if a >= 0.25]
    claim(all(x > y for x, y in zip(sensitivities[:-1], sensitivities[1:], strict=True))
          and health["dead"] < bar and max(strong) < bar < health["healthy"],
          "the check falls as the embedding weakens (" + " > ".join(f"{s:.3g}" for s in sensitivities)
          + f") and flags the dead model ({health['dead']:.1e}) and every copy with a >= 0.25 (bar {bar:.4f})")
    (_, _, intact), (a_mild, mild, mild_fid) = blend[0], blend[1]
    claim(mild > bar and apart(intact, mild_fid), f"a smoke alarm, not a quality gauge: at a = {a_mild:g} the check "
          f"passes ({mild:.4f}, bar {bar:.4f}) while FID rises from {intact[0]:.1f} to {mild_fid[0]:.1f} (apart)")


def lesson_07(results: dict) -> None:
    """Lesson 7 (fast samplers). ``results[(sampler, steps)]``: ``{"error", "fid", "lo", "hi", "accuracy"}`` for
    DDIM and DPM-Solver++(2M) from one x_T, at the same n."""
    r = results
    claim(all(r["dpm++2m", k]["error"] < r["ddim", k]["error"] for k in (5, 10, 20))
          and r["dpm++2m", 10]["error"] < 1.1 * r["ddim", 20]["error"],
          "DPM-Solver++ integrates more accurately: error " + ", ".join(
              f"{r['dpm++2m', k]['error']:.4f} vs {r['ddim', k]['error']:.4f} at {k} NFE" for k in (5, 10, 20))
          + f"; DPM-Solver++-10 {r['dpm++2m', 10]['error']:.4f} vs DDIM-20 {r['ddim', 20]['error']:.4f}")
    interval = lambda key: (r[key]["fid"], r[key]["lo"], r[key]["hi"])  # noqa: E731
    reference = interval(("ddim", 50))
    flat = [key for key in r if key[0] != "ddpm" and key[1] >= 10]
    claim(all(not (apart(interval(key), reference) or apart(reference, interval(key))) for key in flat),
          f"FID is flat from 10 NFE on: every sampler's interval overlaps DDIM-50's ({reference[1]:.1f}-"
          f"{reference[2]:.1f}): " + ", ".join(f"{s}-{k} {r[s, k]['fid']:.1f}" for s, k in flat))
    accs = [r[key]["accuracy"] for key in flat]
    claim(max(accs) - min(accs) < 0.05, f"accuracy from 10 steps on: {min(accs):.3f}-{max(accs):.3f}")


def lesson_08(fids: dict, stamp_cost: tuple, real_fids: list, block: tuple, pr: dict, rater_agrees: bool,
              kid_by_n: dict, coverage: dict, real_covered: list, guided: str) -> None:
    """Lesson 8 (FID's blind spots). ``fids[name]``: FID intervals of the sets ("w=1", "w=1, stamped", "w=3",
    "w=0", "w=10" and the course's ``guided`` w); ``stamp_cost``: the paired FID difference stamped − clean
    at w = 1 with its interval; ``real_fids``: FIDs of random real sets at the same n, ``block``: the FID
    interval of the first n training digits; ``pr[name]``: ``{"precision": (lo, hi), "recall": (lo, hi)}``
    90 % intervals; ``rater_agrees``: whether the careful rater agreed with FID on the stamped-against-w = 3
    pair; ``kid_by_n[n]``: ``{"fid", "kid"}`` as (mean, standard error) over random sets of n real digits;
    ``coverage[name]``: clusters covered, ``real_covered``: the same for the real sets."""
    f = fids
    claim(stamp_cost[1] > 0, f"FID sees the stamp: {f['w=1'][0]:.1f} -> {f['w=1, stamped'][0]:.1f} on the same "
          f"samples, a change of {stamp_cost[0]:+.1f} (paired interval {stamp_cost[1]:+.1f} to {stamp_cost[2]:+.1f})")
    claim(apart(f["w=1, stamped"], f["w=3"]) and pr["w=1, stamped"]["recall"][0] > pr["w=3"]["recall"][1],
          f"yet FID prefers the stamped set to the clean w = 3 set ({f['w=1, stamped'][0]:.1f} vs {f['w=3'][0]:.1f}), "
          f"rewarding variety: recall {sum(pr['w=1, stamped']['recall']) / 2:.3f} vs "
          f"{sum(pr['w=3']['recall']) / 2:.3f}")
    claim(not rater_agrees, "the careful rater, who looks for ink where real digits have none, rejects the stamped "
          "set that FID prefers")
    claim(block[0] > max(real_fids), f"how a real set is drawn moves FID: the first n training digits score "
          f"{block[0]:.1f}, random real sets {min(real_fids):.1f}-{max(real_fids):.1f}")
    small, large = kid_by_n[min(kid_by_n)], kid_by_n[max(kid_by_n)]
    drift = {m: (small[m][0] - large[m][0]) / math.hypot(small[m][1], large[m][1]) for m in ("fid", "kid")}
    claim(drift["fid"] > 10 and abs(drift["kid"]) < 3,
          f"KID does not drift where FID does: on real digits FID averages {small['fid'][0]:.1f} at n = "
          f"{min(kid_by_n)} and {large['fid'][0]:.1f} at n = {max(kid_by_n):,} ({drift['fid']:.0f} standard errors "
          f"apart), KID×1000 {1000 * small['kid'][0]:.1f} and {1000 * large['kid'][0]:.1f} ({drift['kid']:+.1f})")
    claim(coverage["w=10"] < min(real_covered), f"strong guidance loses modes: w = 10 covers {coverage['w=10']} of "
          f"40 clusters, real sets {min(real_covered)}-{max(real_covered)} ({guided}: {coverage[guided]})")
    claim(pr["w=10"]["recall"][1] < pr[guided]["recall"][0] and pr["w=0"]["precision"][1] < pr[guided]["precision"][0],
          f"precision/recall separate the failures: w = 10 recall {sum(pr['w=10']['recall']) / 2:.2f} vs "
          f"{sum(pr[guided]['recall']) / 2:.2f}; w = 0 precision {sum(pr['w=0']['precision']) / 2:.2f} vs "
          f"{sum(pr[guided]['precision']) / 2:.2f} ({guided}), intervals apart")


def lesson_09(error: dict, bend: dict, sweep: dict | None, recorded: dict, accuracy_w1: float, n_w: int) -> None:
    """Lesson 9 (flow matching). ``error[(name, nfe)]``: RMS distance to the 64-step solution; ``bend``:
    median bend of the flow, DDIM-as-walked and DDIM-in-flow-coordinates paths; ``sweep``: the recorded
    equal-NFE FIDs ``{method: {nfe: {"fid", "lo", "hi"}}}`` (or None); ``recorded``: the recorded guidance
    sweep ``{"w1": {"accuracy", "n"}, ...}``; ``accuracy_w1``: the live accuracy at w = 1 on ``n_w``."""
    e = error
    claim(e["flow matching, Heun", 32] < 0.8 * e["flow matching, Euler", 32]
          and e["flow matching, Heun", 8] > e["flow matching, Euler", 8],
          f"Heun pays off only with small steps: error at 8 NFE {e['flow matching, Heun', 8]:.4f} vs Euler "
          f"{e['flow matching, Euler', 8]:.4f}; at 32 NFE {e['flow matching, Heun', 32]:.4f} vs "
          f"{e['flow matching, Euler', 32]:.4f}")
    claim(e["flow matching, Euler", 32] < e["flow matching, Euler", 4] / 3,
          f"Euler converges: error {e['flow matching, Euler', 4]:.4f} at 4 NFE, "
          f"{e['flow matching, Euler', 32]:.4f} at 32")
    ratios = [e["flow matching, Euler", k] / e["diffusion, DDIM", k] for k in (8, 16, 32)]
    claim(all(2 / 3 < r < 1.5 for r in ratios),
          "per network call, Euler on the flow and DDIM on the diffusion ODE are about equally accurate: error ratios "
          + ", ".join(f"{r:.2f}" for r in ratios) + " at 8, 16, 32 NFE")
    straight, walked, mapped = bend["flow"], bend["ddim_walked"], bend["ddim_flow_coords"]
    claim(walked > 2 * straight and 0.75 < mapped / straight < 1.33,
          f"the flow paths bend less than DDIM's as walked ({straight:.3f} vs {walked:.3f}), and about as much as "
          f"DDIM's in flow coordinates ({mapped:.3f})")
    if sweep:
        r = {m: {int(k): v for k, v in sweep[m].items()} for m in ("flow-euler", "flow-heun", "ddim", "dpm++2m")}
        interval = lambda m, k: (r[m][k]["fid"], r[m][k]["lo"], r[m][k]["hi"])  # noqa: E731
        claim(all(apart(interval("flow-euler", k), interval("ddim", k)) for k in r["ddim"]),
              "flow matching (Euler) beats DDIM at every NFE, intervals apart: " + ", ".join(
                  f"{r['flow-euler'][k]['fid']:.1f} vs {r['ddim'][k]['fid']:.1f}" for k in r["ddim"]))
        claim(apart(interval("dpm++2m", 8), interval("flow-euler", 8))
              and apart(interval("flow-euler", 32), interval("dpm++2m", 32)),
              f"against DPM-Solver++ it loses at 8 NFE ({r['flow-euler'][8]['fid']:.1f} vs "
              f"{r['dpm++2m'][8]['fid']:.1f}) and wins at 32 ({r['flow-euler'][32]['fid']:.1f} vs "
              f"{r['dpm++2m'][32]['fid']:.1f})")
        best_flow = min(r[m][k]["hi"] for m in ("flow-euler", "flow-heun") for k in r[m])
        best_diffusion = min(r[m][k]["lo"] for m in ("ddim", "dpm++2m") for k in r[m])
        claim(best_flow < best_diffusion, f"the flow model's best FID (upper end {best_flow:.1f}) is below the "
              f"diffusion model's best with any sampler on the plot (lower end {best_diffusion:.1f})")
    if len(recorded) >= 2:
        (w_lo, a), (w_hi, b) = (lambda ks: ((ks[0], recorded[ks[0]]), (ks[-1], recorded[ks[-1]])))(
            sorted(recorded, key=lambda key: float(key[1:])))
        claim(b["accuracy"] - a["accuracy"] > 2 * math.hypot(se(a["accuracy"], a["n"]), se(b["accuracy"], b["n"])),
              f"guidance on velocities raises accuracy: {a['accuracy']:.3f} at w = {w_lo[1:]} -> "
              f"{b['accuracy']:.3f} at w = {w_hi[1:]} (n = {a['n']:,} each)")
    claim(accuracy_w1 > 0.1 + 4 * se(0.1, n_w), f"the conditional model follows its labels at w = 1: accuracy "
          f"{accuracy_w1:.3f} against 0.1 by chance (n = {n_w})")


def lesson_10(n: int, floor: tuple, baseline: float, latent: tuple, pixel: tuple, train_speedup: float,
              sample_speedup: float, flop_ratio: float, race: dict, recorded_race: dict | None, scale: float,
              scale_mistakes: dict) -> None:
    """Lesson 10 (latent diffusion). ``floor``: the reconstruction FID interval; ``latent``/``pixel``: the two
    models' FID intervals at equal epochs (all at ``n``, real-vs-real ``baseline``); ``race``:
    ``{"budget", "n", "pixel": FID, "latent": FID}`` from the live equal-time race; ``recorded_race``: the
    manifest's ``equal_time`` entry (or None); ``scale_mistakes``: FID intervals decoding with the right
    scale, none, and Stable Diffusion's 0.18215, in that order."""
    claim(latent[1] > floor[2], f"the latent model's FID ({latent[0]:.1f}, lower end {latent[1]:.1f}) is above the "
          f"reconstruction floor ({floor[0]:.1f}, upper end {floor[2]:.1f}) at n = {n:,}: the loss is not the "
          "decoder's")
    claim(apart(pixel, latent), f"at equal epochs the latent model is worse: FID {latent[0]:.1f} ({latent[1]:.1f}-"
          f"{latent[2]:.1f}) against the pixel model's {pixel[0]:.1f} ({pixel[1]:.1f}-{pixel[2]:.1f}), n = {n:,}")
    claim(floor[1] < baseline * 1.5, f"the decoder costs little: reconstruction FID {floor[0]:.1f} ({floor[1]:.1f}-"
          f"{floor[2]:.1f}) against real-vs-real {baseline:.1f} at n = {n:,}")
    claim(train_speedup > 1.5 and sample_speedup > 1.5,
          f"the latent space is faster on this device: training {train_speedup:.1f}x, sampling {sample_speedup:.1f}x")
    claim(flop_ratio > 8, f"one latent network call costs {flop_ratio:.1f}x fewer FLOPs than one pixel call")
    if recorded_race:
        p, q = recorded_race["pixel"], recorded_race["latent"]
        claim(q["hi"] < p["lo"] and q["train_seconds"] <= p["train_seconds"],
              f"recorded, about {recorded_race['seconds_each']:.0f} s each: the latent model beats the pixel model at "
              f"equal training time, FID {q['fid']:.1f} ({q['lo']:.1f}-{q['hi']:.1f}) in {q['train_seconds']:.0f} s "
              f"against {p['fid']:.1f} ({p['lo']:.1f}-{p['hi']:.1f}) in {p['train_seconds']:.0f} s, "
              f"n = {recorded_race['n']:,}")
    rp, rl = race["pixel"], race["latent"]
    claim(apart(rl, rp), f"at equal training time ({race['budget']:g} s each) the latent model is better: FID "
          f"{rl[0]:.1f} ({rl[1]:.1f}-{rl[2]:.1f}) against {rp[0]:.1f} ({rp[1]:.1f}-{rp[2]:.1f}), n = {race['n']}")
    right, none, sd = scale_mistakes.values()
    claim(abs(math.log(scale)) > 0.5 or not (apart(right, none) or apart(none, right)),
          f"forgetting the scale costs little only because it is near 1 here ({scale:.3f}): FID {none[0]:.1f} "
          f"without it against {right[0]:.1f}")
    claim(apart(right, sd), f"decoding with Stable Diffusion's factor instead of the measured one raises FID from "
          f"{right[0]:.1f} to {sd[0]:.1f} (intervals apart)")


def lesson_11(metrics: dict | None, teacher_recorded: dict | None, guided_again: tuple, as_trained: tuple,
              w_new: float, n_live: int) -> None:
    """Lesson 11 (distillation). ``metrics``: the manifest's equal-NFE table (or None); ``teacher_recorded``:
    the teacher's recorded ``{"fid", "sampler", "n"}`` at the course's w (or None); ``guided_again`` and
    ``as_trained``: live FID intervals of the 4-step student guided again at ``w_new`` and as trained."""
    if metrics:
        m = metrics
        for k in (1, 2, 4):
            best_teacher = min((r for name, r in m.items() if name.startswith("teacher-") and isinstance(r, dict)
                                and r.get("nfe") == k), key=lambda r: r["fid"])
            claim(m[f"student-{k}"]["hi"] < best_teacher["lo"],
                  f"at {k} call{'s' * (k > 1)} the student beats the teacher's best sampler at that cost: FID "
                  f"{m[f'student-{k}']['fid']:.1f} against {best_teacher['fid']:.1f} (n = {m['n']:,})")
        if teacher_recorded:
            claim(m["student-4"]["hi"] < teacher_recorded["fid"],
                  f"the 4-step student's FID ({m['student-4']['fid']:.1f}, upper end {m['student-4']['hi']:.1f}) is "
                  f"below the teacher's recorded {teacher_recorded['sampler']} at w = {m['w']:g} "
                  f"({teacher_recorded['fid']:.1f}, n = {teacher_recorded['n']:,}, 40 calls)")
        ref = m[f"teacher-ddim-w{m['w']:g}-20"]
        recalls = [m[f"student-{k}"]["recall"] for k in (1, 2, 4)]
        claim(max(recalls) < ref["recall"] - 2 * se(ref["recall"], m["n_pr"]),
              "the students cover less of the data than the teacher: recall " + ", ".join(f"{r:.3f}" for r in recalls)
              + f" (1, 2, 4 calls) against {ref['recall']:.3f} (DDIM-20, n = {m['n_pr']:,})")
    claim(apart(as_trained, guided_again), f"guiding the student again at w = {w_new:g} ruins its FID: "
          f"{guided_again[0]:.1f} against {as_trained[0]:.1f} as trained (n = {n_live})")
    if metrics:
        a, b = metrics["student-4-at-w3"], metrics["student-4"]
        claim(a["lo"] > b["hi"] and a["recall"] < b["recall"] - 0.1 and a["accuracy"] > b["accuracy"] - 0.01,
              f"recorded: guided again, the 4-step student keeps its accuracy ({a['accuracy']:.3f} vs "
              f"{b['accuracy']:.3f}) and loses FID ({a['fid']:.1f} vs {b['fid']:.1f}) and recall "
              f"({a['recall']:.3f} vs {b['recall']:.3f})")
