"""Lab sounds: Mandarin prompts synthesized with espeak-ng, tones with sox.

Prompt names and texts come from every flow file in ivr_flows/ (top-level
``prompts:`` → sounds/zh/hotline/<name>.wav, what the gateway plays) and from
asterisk_conf/prompts.yaml (→ sounds/zh/<name>.wav, what Asterisk itself
plays: queue announcements, digits). Synthesis is cached by a hash of the
text and voice, so a re-run only copies files.
"""

from __future__ import annotations

import filecmp
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import procs
from .errors import LabError

__all__ = ["LAB_TONES", "Prompt", "SoundBuilder", "Tone", "collect_prompts"]

Report = Callable[[str], None]

#: espeak-ng 1.51's plain ``cmn`` voice ("latin as English") reads the tone
#: digits its dictionary produces as English numbers (您好 → "nin two hao
#: three"; check with ``espeak-ng -v cmn -x -q 您好``). ``cmn-latn-pinyin``
#: speaks the same dictionary correctly, so it is preferred when present.
VOICES = ("cmn-latn-pinyin", "cmn")
SPEED = 175  # espeak-ng's default words per minute
#: 8 kHz mono 16-bit: the telephone format Asterisk's format_wav plays natively
SOX_FORMAT = ["-r", "8000", "-c", "1", "-b", "16"]


@dataclass(frozen=True)
class Prompt:
    #: sound name relative to sounds/<language>/ (no extension)
    name: str
    text: str
    source: str


@dataclass(frozen=True)
class Tone:
    #: path inside the chroot, with extension
    target: str
    #: sox synthesis effects after ``sox -n <format> out.wav``
    effects: tuple[str, ...]


LAB_TONES = (
    # bench: Playback/STREAM FILE of ~0.1 s (language-neutral location)
    Tone("/usr/share/asterisk/sounds/hotline/bench-beep.wav", ("synth", "0.1", "sine", "1000", "vol", "0.3")),
    # bench citizen: 0.4 s of near-silence (media flows, so ANSWER returns at once;
    # the first digit then lands well inside WAIT FOR DIGIT for every server)
    Tone("/usr/share/asterisk/sounds/hotline/bench-silence.wav", ("synth", "0.4", "sine", "300", "vol", "0.001")),
    # [lab-utility]: the stand-in for 110/119/utilities answers with a tone
    Tone(
        "/usr/share/asterisk/sounds/hotline/lab-tone.wav",
        ("synth", "1.0", "sine", "450", "vol", "0.3", "fade", "0.05", "1.0", "0.05"),
    ),
    # musiconhold.conf [default]: a soft two-chord loop, so the class is not empty
    Tone(
        "/var/lib/asterisk/moh/hotline-lab-hold.wav",
        (
            "synth",
            "8",
            "sine",
            "262",
            "sine",
            "330",
            "sine",
            "392",
            "remix",
            "-",
            "tremolo",
            "0.5",
            "30",
            "vol",
            "0.15",
            "fade",
            "0.5",
            "8",
            "0.5",
        ),
    ),
)


def _load_mapping(path: Path, key: str = "prompts") -> dict[str, str]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise LabError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise LabError(f"{path}: expected a mapping at the top level")
    prompts = data.get(key) or {}
    if not isinstance(prompts, dict):
        raise LabError(f"{path}: '{key}' must map prompt names to texts")
    for name, text in prompts.items():
        if not isinstance(name, str) or not isinstance(text, str) or not text.strip():
            raise LabError(f"{path}: prompt {name!r} must have a non-empty text")
        if (
            name.startswith("/")
            or ".." in name.split("/")
            or not all(part.replace("-", "").replace("_", "").isalnum() for part in name.split("/"))
        ):
            raise LabError(f"{path}: prompt name {name!r} is not a plain sound name")
    return prompts


def collect_prompts(flows_dir: Path, prompts_file: Path, flow_prompt_dir: str = "hotline") -> list[Prompt]:
    """All prompts, by sound name; the same name with two texts is an error."""
    found: dict[str, Prompt] = {}

    def add(prompt: Prompt) -> None:
        other = found.get(prompt.name)
        if other is not None and other.text != prompt.text:
            raise LabError(f"prompt {prompt.name!r} has two texts: {other.source} and {prompt.source}")
        found[prompt.name] = prompt

    flow_files = sorted([*flows_dir.glob("*.yaml"), *flows_dir.glob("*.yml")]) if flows_dir.is_dir() else []
    for path in flow_files:
        for name, text in _load_mapping(path).items():
            add(Prompt(f"{flow_prompt_dir}/{name}", text.strip(), str(path)))
    if prompts_file.exists():
        for name, text in _load_mapping(prompts_file).items():
            add(Prompt(name, text.strip(), str(prompts_file)))
    return sorted(found.values(), key=lambda p: p.name)


class SoundBuilder:
    def __init__(self, cache_dir: Path, workers: int = 2) -> None:
        self.cache_dir = cache_dir
        self.workers = workers
        self._voice: str | None = None

    # -- synthesis (cached) --------------------------------------------------------
    def _cached(self, key: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.wav"

    def voice(self) -> str:
        """The best installed Mandarin voice (see VOICES); looked up once."""
        if self._voice is None:
            listing = procs.run(["espeak-ng", "--voices=cmn"], timeout=30).stdout
            installed = {line.split()[1] for line in listing.splitlines()[1:] if len(line.split()) > 1}
            self._voice = next((v for v in VOICES if v in installed), None)
            if self._voice is None:
                raise LabError("espeak-ng has no Mandarin voice (cmn); apt-get install espeak-ng-data")
        return self._voice

    def speech(self, text: str) -> Path:
        """An 8 kHz wav of ``text`` spoken by espeak-ng (cached)."""
        voice = self.voice()
        target = self._cached(f"espeak-ng|{voice}|{SPEED}|{text}")
        if target.exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            raw = Path(tmp) / "raw.wav"
            procs.run(["espeak-ng", "-v", voice, "-s", str(SPEED), "-w", str(raw), text], timeout=60)
            out = Path(tmp) / "out.wav"
            procs.run(["sox", str(raw), *SOX_FORMAT, str(out), "norm", "-3"], timeout=60)
            out.replace(target)
        return target

    def convert(self, source: Path) -> Path:
        """Any audio file sox reads → 8 kHz mono 16-bit wav (cached by content)."""
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        target = self._cached(f"file|{digest}")
        if target.exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            out = Path(tmp) / "out.wav"
            procs.run(["sox", str(source), *SOX_FORMAT, str(out)], timeout=120)
            out.replace(target)
        return target

    def tone(self, tone: Tone) -> Path:
        target = self._cached("sox|" + " ".join(tone.effects))
        if target.exists():
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
            out = Path(tmp) / "out.wav"
            procs.run(["sox", "-n", *SOX_FORMAT, str(out), *tone.effects], timeout=60)
            out.replace(target)
        return target

    # -- installation --------------------------------------------------------------
    def install_prompts(self, prompts: Iterable[Prompt], sounds_dir: Path, report: Report) -> int:
        """Synthesize (in parallel) and copy into ``sounds_dir``; returns files changed."""
        prompts = list(prompts)
        self.voice()  # once, before the threads
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            wavs = list(pool.map(lambda p: self.speech(p.text), prompts))
        changed = sum(install_file(wav, sounds_dir / f"{prompt.name}.wav") for prompt, wav in zip(prompts, wavs))
        report(f"prompts: {len(prompts)} Mandarin prompts in {sounds_dir} ({changed} updated)")
        return changed

    def install_tones(self, tones: Iterable[Tone], host_path: Callable[[str], Path], report: Report) -> None:
        tones = list(tones)
        for tone in tones:
            install_file(self.tone(tone), host_path(tone.target))
        report(f"prompts: {len(tones)} lab tones (bench beep, utility tone, hold music)")


def install_file(source: Path, target: Path) -> bool:
    """Copy if different; world-readable (Asterisk reads sounds as its own user)."""
    if target.exists() and filecmp.cmp(source, target, shallow=False):
        return False
    _make_readable_dirs(target.parent)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o644)
    tmp.replace(target)
    return True


def _make_readable_dirs(path: Path) -> None:
    """mkdir -p with mode 755 for every directory created (whatever the umask)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        directory.chmod(0o755)


__all__ += ["install_file"]
