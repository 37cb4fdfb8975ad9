"""A SIP call's media as a `Line`: RTP (RFC 3550) in and out, 20 ms at a time.

``tick(out)`` waits for the next 20 ms deadline of the call's own real-time clock, sends
``out`` as one RTP packet and returns the 20 ms the phone sent for that slot, from a
small jitter buffer (silence when nothing came). RFC 4733 telephone-events become key
presses reported by the line; when the phone did not negotiate them, its in-band DTMF
reaches the listener like on an analog line. The call's end (BYE, CANCEL, 30 s without
RTP) is reported as a hang-up fact.
"""

import math
import os
import secrets
import select
import socket
import struct
import threading
import time
from array import array

from linebox import FRAME, RATE
from linebox.dsp import g711
from linebox.hw.line import SILENT_FRAME, HungUp, KeyPressed, Line, Tick

FRAME_SECONDS = FRAME / RATE
JITTER_FRAMES = 3             # a missing frame is lost once 3 later ones wait (60 ms of jitter)
MAX_BUFFER_FRAMES = 50        # a second of audio ahead is a timestamp jump: resync
RTP_TIMEOUT = 30.0            # seconds without RTP: the phone is gone
MAX_LATE = 0.2                # fallen this far behind (a stall): start pacing afresh
_EVENT_KEYS = "0123456789*#"  # RFC 4733 §3.2 events 0-11
_HEADER = struct.Struct("!BBHII")


class SipLine(Line):
    """One SIP call's audio. ``media`` is the negotiated `sdp.Media`; ``sock`` a UDP
    socket bound where our SDP said."""

    full_duplex = True
    reports_hangup = True

    def __init__(self, sock: socket.socket, media, peer_host: str | None = None,
                 clock=time.monotonic, sleep=time.sleep) -> None:
        super().__init__(None)
        self.peer_host = peer_host
        self.sock = sock
        self.sock.setblocking(False)
        self.clock = clock
        self.sleep = sleep
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.marker = True
        self.set_media(media)
        self._buffer: dict[int, bytes] = {}   # frame index -> payload
        self._play: int | None = None          # next frame index to play out
        self._ts0 = 0
        self._events: list = []
        self._last_event_ts: int | None = None
        self._hangup: str | None = None
        self._signalled: list = []
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._last_rtp = clock()
        self.off_hook = True
        self.lateness: list[float] = []        # seconds each packet went out late (bench)
        self.measure = False

    def set_media(self, media) -> None:
        """A new answer (re-INVITE, hold): where to send and in what."""
        self.media = media
        self.reports_dtmf = media.dtmf_payload is not None
        self.remote = (media.host, media.port)
        self.hosts = {media.host, self.peer_host} - {None}
        self.silence = (g711.ulaw_encode if media.codec == "PCMU" else g711.alaw_encode)(SILENT_FRAME)
        self.encode = g711.ulaw_encode if media.codec == "PCMU" else g711.alaw_encode
        self.decode = g711.ulaw_decode if media.codec == "PCMU" else g711.alaw_decode
        self.sending = media.direction in ("sendrecv", "sendonly") and media.host != "0.0.0.0"
        self.expect_rtp = media.direction in ("sendrecv", "recvonly")
        self._last_rtp = self.clock()

    @property
    def deadline(self) -> float:
        """When the next frame is due (now, before the first)."""
        return self.clock() if self._deadline is None else self._deadline

    def align(self, slot: float) -> None:
        """Send the first frame at ``slot`` (a shared media clock's)."""
        self._deadline = slot

    def press(self, key: str) -> None:
        """A key the signalling reported (SIP INFO), from the SIP thread."""
        with self._lock:
            self._signalled.append(KeyPressed(key))

    def end(self, cause: str) -> None:
        """The SIP side ended the call (BYE, CANCEL): the flow hears a hang-up."""
        with self._lock:
            if self._hangup is None:
                self._hangup = cause

    # -- the Line interface -------------------------------------------------------
    def tick(self, out: array | None = None) -> Tick:
        now = self.clock()
        if self._deadline is None or now - self._deadline > MAX_LATE:
            self._deadline = now
        self._receive_until(self._deadline)
        now = self.clock()
        if self.measure:
            self.lateness.append(max(0.0, now - self._deadline))
        self._send(out)
        self._deadline += FRAME_SECONDS
        return self._next_frame(now)

    # -- driven by a shared media clock (server.SipService._media_loop) -------------
    def send_frame(self, out: array | None, slot: float) -> None:
        """Send ``out`` for the 20 ms slot that began at ``slot`` (now or just past)."""
        if self.measure:
            self.lateness.append(max(0.0, self.clock() - slot))
        self._send(out)
        self._deadline = slot + FRAME_SECONDS

    def take_frame(self, drained: bool = False) -> Tick:
        """What the phone sent for this slot (after ``send_frame``), without waiting;
        ``drained``: `receive_all` has just emptied the socket."""
        if not drained:
            self._drain()
        return self._next_frame(self.clock())

    def set_hook(self, off_hook: bool) -> None:
        self.off_hook = off_hook

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending -------------------------------------------------------------------
    def _send(self, out: array | None) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + FRAME) & 0xFFFFFFFF
        if not self.sending:
            return
        payload = self.silence if out is None else self.encode(out)
        first = 0x80 if self.marker else 0
        self.marker = False
        header = _HEADER.pack(0x80, first | self.media.payload, self.seq, self.ts, self.ssrc)
        try:
            self.sock.sendto(header + payload, self.remote)
        except OSError:
            pass          # an ICMP error from a phone that went away: the timeout ends it

    # -- receiving -----------------------------------------------------------------
    def _receive_until(self, deadline: float) -> None:
        # Sleep to the deadline, then take what the kernel queued: one wake-up a frame
        # per call, not one a packet (eight calls on a Pi Zero 2 W).
        wait = deadline - self.clock()
        if wait > 0:
            self.sleep(wait)
        self._drain()

    def _drain(self) -> None:
        for _ in range(64):
            if not self._receive_one():
                return

    def _receive_one(self) -> bool:
        """One datagram from the socket, if one waits; False when none did."""
        try:
            data, addr = self.sock.recvfrom(2048)
        except OSError:                       # BlockingIOError: nothing waits
            return False
        # Only the phone's media: its SDP address, or where its signalling comes from.
        if addr[0] in self.hosts:
            self._packet(data)
        return True

    def _packet(self, data: bytes) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        cc = data[0] & 0x0F
        pt = data[1] & 0x7F
        _, _, seq, ts, ssrc = _HEADER.unpack_from(data)
        start = 12 + 4 * cc
        if data[0] & 0x10:                     # header extension: skip it
            if len(data) < start + 4:
                return
            start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
        payload = data[start:]
        if data[0] & 0x20 and payload:         # padding
            payload = payload[:-payload[-1]] if payload[-1] <= len(payload) else b""
        self._last_rtp = self.clock()
        if pt == self.media.dtmf_payload:
            self._telephone_event(ts, payload)
        elif pt == self.media.payload:
            self._audio(ts, payload)

    def _audio(self, ts: int, payload: bytes) -> None:
        if self._play is None:
            self._ts0 = ts
            self._play = 0
        index = (ts - self._ts0) & 0xFFFFFFFF
        if index >= 0x80000000:
            index -= 0x100000000
        index //= FRAME
        if index < self._play:
            return                              # too late: its slot was played already
        if index - self._play > MAX_BUFFER_FRAMES:
            # A timestamp jump (a new source after a re-INVITE): start again from here.
            self._buffer.clear()
            self._ts0, self._play, index = ts, 0, 0
        if len(payload) < FRAME:
            payload += (b"\xff" if self.media.codec == "PCMU" else b"\xd5") * (FRAME - len(payload))
        self._buffer[index] = payload[:FRAME]

    def _telephone_event(self, ts: int, payload: bytes) -> None:
        # RFC 4733 §2.3: every packet of one event carries the event's start timestamp;
        # report the key once, on the first packet seen (the end packets repeat it).
        if len(payload) < 4 or ts == self._last_event_ts:
            return
        event = payload[0]
        if event < len(_EVENT_KEYS):
            self._last_event_ts = ts
            self._events.append(KeyPressed(_EVENT_KEYS[event]))

    def _next_frame(self, now: float) -> Tick:
        audio = SILENT_FRAME
        payload = self._playout()
        if payload is not None:
            audio = self.decode(payload)
        events = self._events
        self._events = []
        with self._lock:
            hangup = self._hangup
            if self._signalled:
                events += self._signalled
                self._signalled = []
        if hangup is None and self.expect_rtp and now - self._last_rtp > RTP_TIMEOUT:
            hangup = self._hangup = "rtp_timeout"
        if hangup is not None and not getattr(self, "_hangup_told", False):
            self._hangup_told = True
            events.append(HungUp(hangup))
        return Tick(audio=audio, loop=None, events=tuple(events))


    def _playout(self) -> bytes | None:
        """The next frame in sender order. The phone's clock rules: when its packet is
        not here yet, play silence and wait for it (a sender slower than us, or jitter);
        when a later one already waits JITTER_FRAMES ahead, the missing one is lost;
        when too much piles up (a sender faster than us), drop the oldest."""
        buf = self._buffer
        if not buf:
            return None
        payload = buf.pop(self._play, None)
        if payload is not None:
            self._play += 1
        elif max(buf) - self._play >= JITTER_FRAMES:
            self._play = min(buf)
            payload = buf.pop(self._play)
            self._play += 1
        while len(buf) > JITTER_FRAMES + 2:
            oldest = min(buf)
            del buf[oldest]
            self._play = max(self._play, oldest + 1)
        return payload


# -- the bridged call's jitter buffer ---------------------------------------------------
JB_KEEP_MIN = 1          # frames that may wait at a pull with nothing trimmed: the one played
JB_KEEP_MAX = 8          # 160 ms: the deepest a string of late packets makes it
JB_TRIM_WINDOW = 10      # pulls (200 ms): a standing excess through all of them is dropped
JB_DECAY_PULLS = 250     # pulls (5 s) without an underrun: keep one frame less
JB_JITTER_K = 2.0        # keep at least this many jitter estimates (RFC 3550 J) of audio


class JitterBuffer:
    """An adaptive playout buffer for one RTP stream of 20 ms frames, pulled on another
    clock (the analog line's, in a bridged call).

    ``put(ts, payload, arrival)`` files a packet by its RTP timestamp; ``take()`` gives
    the next frame in sender order, or None (play silence) when it is not here. No fixed
    depth: a frame plays as soon as it is here, and the buffer holds what the packets'
    timing makes it hold, up to ``keep`` frames at a pull. ``keep`` follows the stream:

    - at least ``JB_JITTER_K`` times the RFC 3550 §6.4.1 inter-arrival jitter estimate,
      and ``JB_KEEP_MIN`` frames;
    - one more at an underrun (a packet later than the frames waiting covered) that
      recurs within ``JB_DECAY_PULLS`` pulls of the last one, up to ``JB_KEEP_MAX``: a
      lone late packet is a spike, better a silent frame than more delay for good. Not
      at the underrun of a pull that came less than half a frame after the one before
      (``take(now)``): the puller is catching up after its own thread stalled, faster
      than any sender, and no packet is late;
    - one less after ``JB_DECAY_PULLS`` pulls without an underrun.

    A backlog that stood above ``keep`` through ``JB_TRIM_WINDOW`` pulls (a burst after
    a stall, a sender whose clock runs fast) is standing latency: the excess is dropped,
    oldest first, at once. An underrun holds the play position: the late frame plays
    next, a frame's margin to the sender's clock again (a sender slower than the puller
    costs one silent frame per frame of drift, no more). A missing frame with ``keep``
    later ones waiting is lost (its slot is skipped), as is one whose slot went silent
    already once a later one is here; a packet for a slot already played is too late
    and dropped.
    Counters: ``underruns``, ``lost``, ``late``, ``trimmed``."""

    def __init__(self, keep_min: int = JB_KEEP_MIN, keep_max: int = JB_KEEP_MAX,
                 trim_window: int = JB_TRIM_WINDOW, decay_pulls: int = JB_DECAY_PULLS) -> None:
        self.keep_min = keep_min
        self.keep_max = keep_max
        self.trim_window = trim_window
        self.decay_pulls = decay_pulls
        self.keep = keep_min
        self.jitter = 0.0                     # seconds, RFC 3550 J
        self._transit: float | None = None
        self._buf: dict[int, bytes] = {}
        self._play: int | None = None         # the next frame index to play
        self._ts0 = 0
        self._min_depth = 1 << 30
        self._window = 0
        self._steady = 0
        self._starved = False                 # in an underrun (counted once for keep)
        self._since_underrun: int | None = None   # pulls since the last underrun began
        self._last_pull: float | None = None
        self.underruns = self.lost = self.late = self.trimmed = 0

    @property
    def depth(self) -> int:
        """Frames waiting."""
        return len(self._buf)

    def put(self, ts: int, payload: bytes, arrival: float) -> None:
        transit = arrival - ts / RATE
        if self._transit is not None:
            d = transit - self._transit
            if abs(d) < 1.0:                   # (a timestamp jump is no jitter)
                self.jitter += (abs(d) - self.jitter) / 16
        self._transit = transit
        if self._play is None:
            self._ts0, self._play = ts, 0
        index = (ts - self._ts0) & 0xFFFFFFFF
        if index >= 0x80000000:
            index -= 0x100000000
        index //= FRAME
        if index < self._play:
            self.late += 1                      # its slot was played already
            return
        if index - self._play > MAX_BUFFER_FRAMES:
            # A timestamp jump (a new source after a re-INVITE): start again from here.
            self._buf.clear()
            self._ts0, self._play, index = ts, 0, 0
        self._buf[index] = payload

    def take(self, now: float | None = None) -> bytes | None:
        """The next frame in sender order, or None (play silence); ``now``: when, on the
        puller's clock (seconds)."""
        buf = self._buf
        catching_up = (now is not None and self._last_pull is not None
                       and now - self._last_pull < FRAME_SECONDS / 2)
        self._last_pull = now
        if self._play is None:
            return None                         # nothing came yet
        if self._since_underrun is not None:
            self._since_underrun += 1
        depth = len(buf)
        floor = max(self.keep_min, math.ceil(JB_JITTER_K * self.jitter / FRAME_SECONDS - 1e-9))
        if self.keep < floor:
            self.keep = min(floor, self.keep_max)
        if depth < self._min_depth:
            self._min_depth = depth
        self._window += 1
        if self._window >= self.trim_window:
            for _ in range(self._min_depth - self.keep):
                self._drop_oldest()
            self._min_depth = 1 << 30
            self._window = 0
        while len(buf) > self.keep_max:
            self._drop_oldest()
        payload = buf.pop(self._play, None)
        if payload is None and buf and (len(buf) >= self.keep or self._starved):
            # Later frames wait, as many as it keeps or its slot went silent already:
            # this one is lost.
            self.lost += 1
            self._play = min(buf)
            payload = buf.pop(self._play)
        if payload is not None:
            self._play += 1
            self._starved = False
            self._steady += 1
            if self._steady >= self.decay_pulls:
                self._steady = 0
                if self.keep > floor:
                    self.keep -= 1
            return payload
        self.underruns += 1
        self._steady = 0
        if not self._starved:
            self._starved = True
            if not catching_up:
                if self._since_underrun is not None and self._since_underrun <= self.decay_pulls:
                    self.keep = min(self.keep + 1, self.keep_max)
                self._since_underrun = 0
        return None

    def _drop_oldest(self) -> None:
        oldest = min(self._buf)
        del self._buf[oldest]
        self._play = max(self._play, oldest + 1)
        self.trimmed += 1


def receive_all(lines) -> None:
    """Empty the sockets of many lines at once: a poll says which have datagrams
    waiting, each of those gives one, and again until none has more. For calls that
    send one packet a frame that is a poll or two a slot and a recvfrom a packet, not
    a failing recvfrom (and its exception) for every call and frame."""
    waiting = {line.sock.fileno(): line for line in lines}
    for _ in range(64):
        poller = select.poll()
        for fd in waiting:
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        ready = poller.poll(0)
        if not ready:
            return
        waiting = {fd: waiting[fd] for fd, ev in ready
                   if ev & select.POLLIN and waiting[fd]._receive_one()}


def open_rtp_socket(host: str) -> socket.socket:
    """A UDP socket for a call's RTP on ``host``, on an even port (RFC 3550 §11)."""
    for _ in range(50):
        port = 10000 + 2 * (int.from_bytes(os.urandom(2), "big") % 5000)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host, port))
            return s
        except OSError:
            s.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s
