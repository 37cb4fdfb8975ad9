"""A Wyoming speech-to-text server for the tests: the `wyoming` library's own TCP server
and event types (the protocol is entirely the library's), with CMU PocketSphinx and the
US English model its wheel carries as the engine — a real recogniser, as the
Home Assistant add-ons run one (no Wyoming server packaged on PyPI ships its model, so
this glue is the only part written here).

    python wyoming_stt_server.py PORT [--mode ok|slow|error|garbage|badtext|close] [--log FILE]

Modes, for the failure tests: ``ok`` transcribes; ``slow`` waits 30 s first; ``error``
answers a Wyoming ``error`` event; ``garbage`` answers a line that is not a Wyoming
event; ``badtext`` a transcript whose text is not text; ``close`` hangs up without
answering. ``--log`` appends one JSON line per request (language, audio format, bytes
received) so tests can check what Linebox sent.
"""

import argparse
import asyncio
import json
import sys
from array import array
from pathlib import Path

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncTcpServer


def _decoder():
    from pocketsphinx import Decoder
    return Decoder(samprate=16000, loglevel="FATAL")


def _upsample2(samples: array) -> array:
    out = array("h", bytes(4 * len(samples)))
    out[0::2] = samples
    nxt = samples[1:]
    nxt.append(samples[-1] if samples else 0)
    out[1::2] = array("h", map(lambda a, b: (a + b) >> 1, samples, nxt))
    return out


class Handler(AsyncEventHandler):
    def __init__(self, *args, mode: str, log: Path | None, decoder, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mode, self.log, self.decoder = mode, log, decoder
        self.language = None
        self.fmt = None
        self.audio = bytearray()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(_info().event())
            return True
        if Transcribe.is_type(event.type):
            self.language = Transcribe.from_event(event).language
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            self.fmt = {"rate": start.rate, "width": start.width, "channels": start.channels}
        elif AudioChunk.is_type(event.type):
            self.audio += AudioChunk.from_event(event).audio
        elif AudioStop.is_type(event.type):
            if self.log is not None:
                with self.log.open("a") as f:
                    f.write(json.dumps({"language": self.language, "format": self.fmt,
                                        "bytes": len(self.audio), "mode": self.mode}) + "\n")
            return await self._answer()
        return True

    async def _answer(self) -> bool:
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "error":
            await self.write_event(Error(text="model not loaded", code="no-model").event())
            return False
        if self.mode == "garbage":
            self.writer.write(b"this is not a wyoming event\n")
            await self.writer.drain()
            return False
        if self.mode == "badtext":
            self.writer.write(b'{"type": "transcript", "data": {"text": ["x"]}}\n')
            await self.writer.drain()
            return False
        if self.mode == "close":
            return False
        samples = array("h", bytes(self.audio))
        d = self.decoder
        d.start_utt()
        d.process_raw(_upsample2(samples).tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        await self.write_event(Transcript(text=hyp.hypstr if hyp else "").event())
        return False


def _info() -> Info:
    attribution = Attribution(name="CMU", url="https://github.com/cmusphinx/pocketsphinx")
    return Info(asr=[AsrProgram(
        name="pocketsphinx", description="CMU PocketSphinx", attribution=attribution,
        installed=True, version="5", models=[AsrModel(
            name="en-us", description="US English", attribution=attribution, installed=True,
            languages=["en"], version="5")])])


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--mode", default="ok", choices=["ok", "slow", "error", "garbage", "badtext", "close"])
    p.add_argument("--log", type=Path)
    args = p.parse_args()
    decoder = _decoder() if args.mode == "ok" else None
    server = AsyncTcpServer("127.0.0.1", args.port)
    print("ready", flush=True)
    await server.run(lambda reader, writer: Handler(reader, writer, mode=args.mode, log=args.log,
                                                    decoder=decoder))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
