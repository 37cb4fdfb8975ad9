"""Tone plans: the call-progress tones, ring cadence and caller-ID standard of each country.

One table per plan. Cadences are (on, off, on, off, ...) in seconds, starting with on;
an empty cadence is a steady tone. Frequencies sound together. Levels are per frequency,
for generating the tone; the detectors accept -10 to -30 dBm0 whatever the plan says.
"""

from dataclasses import dataclass

PLAN_NAMES = ("us", "uk", "de", "fr", "eu")


@dataclass(frozen=True)
class ToneSpec:
    """A call-progress tone: frequencies sounding together, switched by a cadence.

    ``declare_after`` and ``min_steady`` say when a detector is sure of it: after that
    many elements of its cadence (on, off, ...) matched, soon enough for the latency the
    tone is allowed; a steady tone after ``min_steady`` seconds (or longer, when another
    tone of the plan shares its sound)."""

    freqs: tuple[float, ...]
    cadence: tuple[float, ...] = ()
    level_dbm0: float = -13.0
    declare_after: int = 0          # 0: the whole cadence, at most 4 elements
    min_steady: float = 1.0


# ITU-T E.180 (03/1998) §7 and Annex: SIT is three segments of 950 +- 50, 1400 +- 50
# and 1800 +- 50 Hz, each 330 +- 70 ms, with up to 30 ms of silence between them. Every
# plan accepts at least this, whatever its own exchanges send.
E180_SIT_BANDS = ((900.0, 1000.0), (1350.0, 1450.0), (1750.0, 1850.0))
E180_SIT_LENGTHS = (0.260, 0.400)


@dataclass(frozen=True)
class SitSpec:
    """Special information tone: three rising segments, each one of a few frequencies.

    ``segments`` and ``durations`` are what the plan's exchanges send (the simulator
    sends the first choice); ``bands`` and ``lengths`` are what a detector accepts."""

    segments: tuple[tuple[float, ...], ...]   # frequency choices per segment
    durations: tuple[float, ...]              # durations a segment is sent with (s)
    gap_after: float                          # silence after the three segments (s)
    level_dbm0: float = -24.0
    bands: tuple[tuple[float, float], ...] = E180_SIT_BANDS   # accepted Hz per segment
    lengths: tuple[float, float] = E180_SIT_LENGTHS           # accepted segment length (s)


@dataclass(frozen=True)
class Plan:
    """A country's call-progress tones, SIT, ring cadence and caller-ID standard."""

    name: str
    tones: dict[str, ToneSpec]
    sit: SitSpec
    ring_cadence: tuple[float, ...]
    callerid: str                               # "bell202" or "v23"


# ITU-T E.180 SIT (950 / 1400 / 1800 Hz, 330 ms each, then 1 s of silence).
ITU_SIT = SitSpec(segments=((950.0,), (1400.0,), (1800.0,)), durations=(0.330,), gap_after=1.0)
# North American SIT (Telcordia GR-1162): low or high frequency per segment, each short
# (276 ms) or long (380 ms); the third is always 1776.7 Hz and long. Its frequencies lie
# inside E.180's bands; its lengths are accepted +-20 % (assumption: GR-1162's own
# tolerance is not at hand), which covers E.180's 260 to 400 ms.
NA_SIT = SitSpec(segments=((913.8, 985.2), (1370.6, 1428.5), (1776.7,)),
                 durations=(0.276, 0.380), gap_after=0.0,
                 lengths=(round(0.276 * 0.8, 4), round(0.380 * 1.2, 4)))
# Germany (1TR110): the E.180 tone, whose first segment older exchanges send at 900 Hz
# (the edge of E.180's band).
DE_SIT = SitSpec(segments=((950.0, 900.0), (1400.0,), (1800.0,)), durations=(0.330,),
                 gap_after=1.0)

# When each tone is sure (declare_after): busy after on off on off on (2.5 s, within its
# 3.5 s); reorder after three on/off pairs of an even cadence (1.5 s, as the 4th on
# begins; 2 s allowed) or one cycle of an uneven one (uk: 1.5 s), which no busy cadence
# matches; ringback of a sound of its own after its first ring (2 s us; 0.4 + 0.2 + 0.4
# uk), of a sound shared with dial and busy after the silence that follows it too; CNG
# (T.30) after its first beep and silence, as the second begins (3.5 s, within 4 s).
# CED (T.30: 2100 Hz for 2.6 to 4 s) is sure after half a second.
BUSY_AFTER = 5
REORDER_AFTER = 6
SHARED_RINGBACK_AFTER = 2

FAX_CNG = ToneSpec((1100.0,), (0.5, 3.0), -10.0, declare_after=2)
FAX_CED = ToneSpec((2100.0,), (), -10.0, min_steady=0.5)

PLANS: dict[str, Plan] = {
    "us": Plan(
        "us",
        {
            "dial": ToneSpec((350.0, 440.0), (), -13.0),
            "busy": ToneSpec((480.0, 620.0), (0.5, 0.5), -24.0, BUSY_AFTER),
            "reorder": ToneSpec((480.0, 620.0), (0.25, 0.25), -24.0, REORDER_AFTER),
            "ringback": ToneSpec((440.0, 480.0), (2.0, 4.0), -19.0, 1),
        },
        NA_SIT, (2.0, 4.0), "bell202"),
    "uk": Plan(
        "uk",
        {
            "dial": ToneSpec((350.0, 450.0), (), -13.0),
            "busy": ToneSpec((400.0,), (0.375, 0.375), -13.0, BUSY_AFTER),
            "reorder": ToneSpec((400.0,), (0.4, 0.35, 0.225, 0.525), -13.0, 4),
            "ringback": ToneSpec((400.0, 450.0), (0.4, 0.2, 0.4, 2.0), -16.0, 3),
        },
        ITU_SIT, (0.4, 0.2, 0.4, 2.0), "v23"),
    "de": Plan(
        "de",
        {
            "dial": ToneSpec((425.0,), (), -10.0),
            "busy": ToneSpec((425.0,), (0.48, 0.48), -10.0, BUSY_AFTER),
            "reorder": ToneSpec((425.0,), (0.24, 0.24), -10.0, REORDER_AFTER),
            "ringback": ToneSpec((425.0,), (1.0, 4.0), -10.0, SHARED_RINGBACK_AFTER),
        },
        DE_SIT, (1.0, 4.0), "v23"),
    "fr": Plan(
        "fr",
        {
            "dial": ToneSpec((440.0,), (), -10.0),
            "busy": ToneSpec((440.0,), (0.5, 0.5), -10.0, BUSY_AFTER),
            "reorder": ToneSpec((440.0,), (0.25, 0.25), -10.0, REORDER_AFTER),
            "ringback": ToneSpec((440.0,), (1.5, 3.5), -10.0, SHARED_RINGBACK_AFTER),
        },
        ITU_SIT, (1.5, 3.5), "v23"),
    "eu": Plan(
        "eu",
        {
            "dial": ToneSpec((425.0,), (), -10.0),
            "busy": ToneSpec((425.0,), (0.5, 0.5), -10.0, BUSY_AFTER),
            "reorder": ToneSpec((425.0,), (0.25, 0.25), -10.0, REORDER_AFTER),
            "ringback": ToneSpec((425.0,), (1.0, 4.0), -10.0, SHARED_RINGBACK_AFTER),
        },
        ITU_SIT, (1.0, 4.0), "v23"),
}


def get_plan(name: str) -> Plan:
    try:
        return PLANS[name]
    except KeyError:
        raise ValueError(f"unknown tone plan {name!r} (one of {', '.join(PLAN_NAMES)})") from None


def tone_signal(plan: str | Plan, name: str, seconds: float, level_dbm0: float | None = None):
    """``seconds`` of the plan's tone ``name`` (dial, busy, reorder, ringback, sit, fax-cng,
    fax-ced) as 8 kHz samples, as an exchange would send it."""
    from linebox.dsp import gen

    p = plan if isinstance(plan, Plan) else get_plan(plan)
    if name == "sit":
        sit = p.sit
        lv = sit.level_dbm0 if level_dbm0 is None else level_dbm0
        one = sum((gen.tone(seg[0], sit.durations[-1 if i == 2 else 0], lv)
                   for i, seg in enumerate(sit.segments)), gen.silence(0))
        one += gen.silence(max(sit.gap_after, 0.2))
        out = one
        while len(out) < seconds * 8000:
            out += one
        del out[int(round(seconds * 8000)):]
        return out
    spec = {"fax-cng": FAX_CNG, "fax-ced": FAX_CED}.get(name) or p.tones[name]
    lv = spec.level_dbm0 if level_dbm0 is None else level_dbm0
    return gen.cadence(spec.freqs, spec.cadence, seconds, lv)
