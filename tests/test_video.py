"""Video: `dslrify enhance clip.mp4` keeps frames, timing, rotation, sound and tags, refuses damaged clips
in one line without leaving files, and stays temporally stable (the flicker measure) on small generated
clips with the shipped `fast` model."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clips import decoded, noisy, packets, pan, photo_strip, scene, write_clip
from dslrify.cli import app
from dslrify.enhancer import Enhancer
from dslrify.errors import DslrifyError, PhotoError
from dslrify.models.guided import GuidedContext
from dslrify.temporal import (
    FrameContext,
    blend_context,
    flicker,
    lab_means,
    motion,
    shift_context,
    signature,
)
from dslrify.video import VideoOptions, enhanced_frames
from inputs_gen import CASES, EITHER, INVALID, Case

runner = CliRunner()
PHOTO = Path(__file__).resolve().parents[1] / "assets" / "demo" / "phone.jpg"  # a real phone photo


@pytest.fixture(scope="module")
def fast() -> Enhancer:
    return Enhancer("fast", device="cpu")


def enhance(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["enhance", "-m", "fast", *args])
    return result.exit_code, result.output


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def lab_flicker(frames: list[np.ndarray]) -> float:
    return flicker(lab_means(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)))


def test_rotated_clip_with_sound_keeps_frames_timing_rotation_audio_and_tags(tmp_path: Path) -> None:
    src = write_clip(
        tmp_path / "clip.mp4",
        noisy(scene(120, 160), 20),
        rotation=90,
        audio=0.8,
        creation_time="2024-05-01T10:00:00.000000Z",
    )
    code, output = enhance(str(src), "-o", str(tmp_path / "out"))
    assert code == 0, output
    dst = tmp_path / "out" / "clip_dslr.mp4"
    assert files(tmp_path / "out") == ["clip_dslr.mp4"]
    frames_in, times_in, rotation_in = decoded(src)
    frames_out, times_out, rotation_out = decoded(dst)
    assert len(frames_out) == len(frames_in) == 20
    assert times_out == pytest.approx(times_in, abs=1e-6)
    assert rotation_in == rotation_out == 90
    assert frames_out[0].shape == frames_in[0].shape == (120, 160, 3)
    assert packets(dst, "audio") == packets(src, "audio") and len(packets(src, "audio")) > 10
    with av.open(str(dst)) as c:
        assert c.metadata["creation_time"] == "2024-05-01T10:00:00.000000Z"
        assert c.streams.video[0].codec_context.name == "h264"
    assert np.abs(frames_out[5].astype(int) - frames_in[5]).mean() > 1  # the model did something


def test_variable_frame_rate_stays_variable(tmp_path: Path) -> None:
    pts = [0, 3000, 6000, 15000, 16500, 18000, 30000, 33000, 34000, 45000]  # 1/90000 s
    src = write_clip(tmp_path / "vfr.mp4", [scene(48, 64, i % 3) for i in range(len(pts))], pts=pts)
    dst = Enhancer("fast", device="cpu").enhance_video(src, tmp_path / "vfr_dslr.mp4")
    _, times_in, _ = decoded(src)
    _, times_out, _ = decoded(dst)
    assert times_in == pytest.approx([p / 90000 for p in pts], abs=1e-6)
    assert times_out == pytest.approx(times_in, abs=1e-6)


@pytest.mark.parametrize(("ext", "subtitle_codec"), [(".mp4", "mov_text"), (".mkv", "subrip")])
def test_subtitles_are_copied_packet_for_packet(
    tmp_path: Path, fast: Enhancer, ext: str, subtitle_codec: str
) -> None:
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:  # PyAV cannot encode subtitles; Debian's ffmpeg muxes them (.ci/run installs it)
        pytest.skip("needs the ffmpeg binary to mux a subtitle track")
    plain = write_clip(tmp_path / f"plain{ext}", [scene(48, 64, i) for i in range(12)], audio=0.5)
    srt = tmp_path / "subs.srt"
    srt.write_text(
        "1\n00:00:00,000 --> 00:00:00,400\nfirst line\n\n2\n00:00:00,500 --> 00:00:01,000\nsecond\n"
    )
    src = tmp_path / f"c{ext}"
    cmd = [ffmpeg, "-v", "error", "-i", str(plain), "-i", str(srt), "-map", "0", "-map", "1", "-c", "copy"]
    subprocess.run([*cmd, "-c:s", subtitle_codec, str(src)], check=True)
    dst = fast.enhance_video(src, tmp_path / f"c_dslr{ext}")
    subtitles = packets(src, "subtitle")
    assert len(subtitles) >= 2 and any(b"second" in payload for payload, _ in subtitles)  # mov_text: + gaps
    assert packets(dst, "subtitle") == subtitles
    assert packets(dst, "audio") == packets(src, "audio")
    names = []
    for clip in (src, dst):
        with av.open(str(clip)) as c:
            names.append([st.codec_context.name for st in c.streams.subtitles])
    assert names[0] == names[1] and len(names[0]) == 1  # PyAV names subrip "srt"


@pytest.mark.parametrize(("ext", "codec"), [(".mkv", "h264"), (".mov", "h264"), (".webm", "vp9")])
def test_each_container_is_kept_with_its_codec(tmp_path: Path, fast: Enhancer, ext: str, codec: str) -> None:
    src = write_clip(tmp_path / f"c{ext}", [scene(48, 64, i) for i in range(6)], audio=0.3)
    dst = fast.enhance_video(src, tmp_path / f"c_dslr{ext}")
    _, times_in, _ = decoded(src)
    frames_out, times_out, _ = decoded(dst)
    assert times_out == pytest.approx(times_in, abs=1e-3)  # Matroska stores milliseconds
    assert packets(dst, "audio") == packets(src, "audio")
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == codec
        assert c.format.name.split(",")[0] in {".mkv": "matroska", ".mov": "mov", ".webm": "matroska"}[ext]


def test_ten_bit_stays_ten_bit(tmp_path: Path, fast: Enhancer) -> None:
    ramp = (np.linspace(0, 65535, 64)[None, :, None] * np.ones((48, 1, 3))).astype(np.uint16)
    src = write_clip(tmp_path / "deep.mp4", [ramp] * 4, deep=True)
    dst = fast.enhance_video(src, tmp_path / "deep_dslr.mp4")
    with av.open(str(dst)) as c:
        frame = next(c.decode(video=0))
    assert frame.format.name == "yuv420p10le"
    luma = frame.to_ndarray(format="gray16le")
    assert len(np.unique(luma[:, 8:56] >> 6)) > 40  # a 10-bit ramp, not 8-bit steps in 10-bit


def test_codec_option_chooses_the_encoder(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "c.mkv", [scene(48, 64, i) for i in range(4)])
    code, output = enhance(str(src), "-o", str(tmp_path / "out"), "--codec", "libx265", "--crf", "30")
    assert code == 0, output
    with av.open(str(tmp_path / "out" / "c_dslr.mkv")) as c:
        assert c.streams.video[0].codec_context.name == "hevc"
    code, output = enhance(str(src), "-o", str(tmp_path / "out2"), "--codec", "nonesuch")
    assert code != 0 and output.count("\n") == 1 and "--codec nonesuch" in output
    assert not (tmp_path / "out2").exists()


def test_folders_pick_up_videos_and_ext_applies_to_photos_only(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_clip(folder / "b.mp4", [scene(48, 64, i) for i in range(3)])
    from PIL import Image

    Image.fromarray(scene(48, 64)).save(folder / "a.jpg")
    code, output = enhance(str(folder), "-o", str(tmp_path / "out"), "--ext", "png")
    assert code == 0, output
    assert files(tmp_path / "out") == ["a_dslr.png", "b_dslr.mp4"]
    code, output = enhance(str(folder), "-o", str(tmp_path / "out"))  # never overwrites
    assert code == 0 and "b_dslr.mp4 already exists" in output


def test_hdr_is_refused_with_advice_and_nothing_written(tmp_path: Path, fast: Enhancer) -> None:
    src = write_clip(tmp_path / "hdr.mp4", [scene(48, 64)] * 3, transfer=16)
    with pytest.raises(PhotoError, match="HDR video .PQ") as e:
        fast.enhance_video(src, tmp_path / "out.mp4")
    assert "SDR" in str(e.value) and files(tmp_path) == ["hdr.mp4"]


def test_allow_truncated_enhances_what_is_there(tmp_path: Path) -> None:
    whole = write_clip(tmp_path / "w.mp4", [scene(48, 64, i) for i in range(10)], faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(PhotoError, match="truncated"):
        Enhancer("fast", device="cpu").enhance_video(cut, tmp_path / "a.mp4")
    dst = Enhancer("fast", device="cpu", allow_truncated=True).enhance_video(cut, tmp_path / "b.mp4")
    assert 0 < len(decoded(dst)[0]) < 10 and not (tmp_path / "a.mp4").exists()


VIDEO_CASES = [c for c in CASES if c.kind == "video"]


@pytest.mark.parametrize("case", VIDEO_CASES, ids=lambda c: c.name)
def test_damaged_clip(case: Case, tmp_path: Path, fast: Enhancer) -> None:
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    src = case.build(inputs)
    before = src.read_bytes()
    try:
        fast.enhance_video(src, outputs / f"o{src.suffix}")
        error = None
    except DslrifyError as e:  # anything else fails the test with its traceback
        error = e
    assert src.read_bytes() == before and files(inputs) == [src.name]
    if case.expect == INVALID:
        assert error is not None, "a damaged clip was enhanced"
    if error is not None:
        assert "\n" not in str(error) and src.name in str(error) and error.advice
        assert files(outputs) == [], "a temporary or partial file was left"
    else:
        assert case.expect == EITHER and len(decoded(outputs / f"o{src.suffix}")[0]) > 0


def test_the_input_generator_has_damaged_clips() -> None:
    assert len(VIDEO_CASES) >= 20 and {c.expect for c in VIDEO_CASES} == {INVALID, EITHER}


# -- temporal stability ------------------------------------------------------------------------------


def test_flicker_on_a_static_noisy_scene(tmp_path: Path, fast: Enhancer) -> None:
    src = write_clip(tmp_path / "static.mp4", noisy(scene(120, 160, 4), 30, sigma=8))
    dst = fast.enhance_video(src, tmp_path / "static_dslr.mp4")
    before, after = lab_flicker(decoded(src)[0]), lab_flicker(decoded(dst)[0])
    assert after <= 1.1 * before + 0.1, (before, after)


def test_flicker_on_a_pan_with_an_exposure_ramp(tmp_path: Path, fast: Enhancer) -> None:
    strip = photo_strip(PHOTO, 120, 160)
    src = write_clip(tmp_path / "pan.mp4", pan(strip, 160, 30, ramp=(0.7, 1.2)))
    dst = fast.enhance_video(src, tmp_path / "pan_dslr.mp4")
    before, after = lab_flicker(decoded(src)[0]), lab_flicker(decoded(dst)[0])
    assert after <= 1.1 * before + 0.1, (before, after)


def test_a_scene_cut_resets_the_context(tmp_path: Path, fast: Enhancer) -> None:
    a, b = noisy(scene(120, 160, 5), 8), noisy(255 - scene(120, 160, 6), 8)
    src = write_clip(tmp_path / "cut.mp4", a + b)
    frames = [torch.from_numpy(f).permute(2, 0, 1)[None].contiguous() for f in decoded(src)[0]]
    context = FrameContext(fast, every=4)
    used = [context(x, i / 25) for i, x in enumerate(frames)]
    assert context.cuts == [0, 8]
    fresh = fast.context_of(frames[8])
    assert torch.equal(_coef(used[8]), _coef(fresh))  # the new scene starts from its own context
    assert not torch.equal(_coef(used[9]), _coef(fast.context_of(frames[9])))  # then it is smoothed


def _coef(context: object) -> torch.Tensor:
    """The guided filter's coefficient maps of a `fast` context (inside the quality gate's, if any)."""
    return context.coef if isinstance(context, GuidedContext) else context.base.coef  # type: ignore[attr-defined]


def test_the_context_follows_a_change_by_time_not_frames() -> None:
    def guided(level: float) -> GuidedContext:
        return GuidedContext(torch.full((1, 12, 2, 2), level), 4, 4)

    step = blend_context(guided(0.0), guided(1.0), 0.25)
    assert step.coef.unique().tolist() == [0.25] and (step.height, step.width) == (4, 4)

    class Steps:  # an Enhancer whose context jumps from 0 to 1 at frame 2
        calls = 0

        def context_of(self, x: torch.Tensor) -> GuidedContext:
            self.calls += 1
            return guided(float(x.float().mean() > 0))

    same = torch.zeros(1, 3, 8, 8)  # one scene: no cut when the level changes by this little
    frames = [same, same, same + 1 / 255, same + 1 / 255, same + 1 / 255]
    steps = Steps()
    context = FrameContext(steps, every=1, smoothing=0.5)  # type: ignore[arg-type]
    levels = [float(context(x, t).coef.mean()) for x, t in zip(frames, [0, 0.1, 0.2, 0.3, 0.7], strict=True)]
    assert levels[:2] == [0, 0] and context.cuts == [0]
    assert levels[2] == pytest.approx(1 - np.exp(-0.2))
    assert levels[3] == pytest.approx(1 - np.exp(-0.4))
    assert levels[4] == pytest.approx(1 - np.exp(-1.2))  # a 0.4 s gap moves as far as four 0.1 s steps
    every = FrameContext(Steps(), every=3)  # type: ignore[arg-type]
    for i in range(7):
        every(same, i / 25)
    assert every.enhancer.calls == 3  # type: ignore[attr-defined]  # frames 0, 3 and 6


def test_enhanced_frames_for_pipelines(tmp_path: Path, fast: Enhancer) -> None:
    src = write_clip(tmp_path / "p.mp4", [scene(48, 64, i % 2) for i in range(6)], rate=30)
    out = list(enhanced_frames(fast, src, VideoOptions(context_every=2)))
    assert [f.index for f in out] == list(range(6))
    assert [f.time for f in out] == pytest.approx([i / 30 for i in range(6)], abs=1e-4)
    assert all(f.pixels.shape == (1, 3, 48, 64) and 0 <= f.pixels.min() <= f.pixels.max() <= 1 for f in out)


def test_a_pan_does_not_smear_one_frame_s_colours_over_the_next(tmp_path: Path, fast: Enhancer) -> None:
    """The smoothed context moves with the picture: each frame stays close to its own enhancement
    (without motion compensation, a pan of 1/30 of the width per frame is off by ~0.06 on average)."""
    strip = photo_strip(PHOTO, 120, 160)
    src = write_clip(tmp_path / "pan.mp4", pan(strip, 160, 30))
    frames = [torch.from_numpy(f).permute(2, 0, 1)[None].contiguous() for f in decoded(src)[0]]
    for got, x in zip(enhanced_frames(fast, src), frames, strict=True):
        assert float((got.pixels - fast.enhance_tensor(x)).abs().mean()) < 0.03, got.index


def test_motion_is_measured_and_context_maps_move_with_it() -> None:
    big = torch.from_numpy(scene(120, 200, 3)).permute(2, 0, 1)[None]
    a, b = signature(big[..., 20:180]), signature(big[..., 12:172])  # the view moves 8 px left
    dx, dy = motion(a[2], b[2])
    assert dx == pytest.approx(8 / 160, abs=0.004) and dy == pytest.approx(0, abs=0.004)
    grid = GuidedContext(torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 12, 1, 1), 120, 160)
    moved = shift_context(grid, 0.25, 0.0)  # one cell to the right, edge repeated
    assert moved.coef[0, 0].tolist()[1] == [4, 4, 5, 6] and (moved.height, moved.width) == (120, 160)


def test_an_interrupted_clip_leaves_nothing_and_no_thread(tmp_path: Path, fast: Enhancer) -> None:
    import threading

    src = write_clip(tmp_path / "c.mp4", [scene(48, 64, i) for i in range(12)], audio=0.5)
    out = tmp_path / "out"
    out.mkdir()
    before = threading.active_count()

    def stop_at_four(done: int, expected: int | None) -> None:
        assert expected == 12
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fast.enhance_video(src, out / "c_dslr.mp4", on_frame=stop_at_four)
    assert files(out) == [] and threading.active_count() == before


def test_ten_bit_webm_needs_an_encoder_that_writes_ten_bits(tmp_path: Path, fast: Enhancer) -> None:
    ramp = (np.linspace(0, 65535, 64)[None, :, None] * np.ones((64, 1, 3))).astype(np.uint16)
    src = write_clip(tmp_path / "deep.mkv", [ramp] * 3, deep=True)
    with pytest.raises(DslrifyError, match="cannot write this 10-bit video") as e:
        fast.enhance_video(src, tmp_path / "deep.webm")  # VP9 by default: 8 bits only in this FFmpeg
    assert "libsvtav1" in str(e.value) and files(tmp_path) == ["deep.mkv"]
    dst = fast.enhance_video(src, tmp_path / "deep.webm", codec="libsvtav1")
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name in ("av1", "libdav1d")
        assert next(c.decode(video=0)).format.name == "yuv420p10le"


def test_a_long_clip_says_how_long_it_will_take(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from dslrify import shell
    from dslrify.batch import Job, Plan

    console = Console(file=io.StringIO(), width=200)
    job = Job(Path("long.mp4"), Path("long_dslr.mp4"))
    clock = iter([100.0, 103.0, 104.0])
    monkeypatch.setattr(shell.time, "perf_counter", lambda: next(clock))
    with shell.batch_progress(console, "fast", Plan([job])) as (_, on_frame):
        on_frame(job, 1, 1000)  # the clip starts
        on_frame(job, 10, 1000)  # 3 s later: 3.3 frames/s, 1000 frames take 5 min
        on_frame(job, 14, 1000)  # said once only
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert text.count("long.mp4: 1000 frames at 3.3 frames/s, about 5.0 min") == 1


def test_smoothing_is_what_keeps_the_noise_from_flickering(tmp_path: Path, fast: Enhancer) -> None:
    src = write_clip(tmp_path / "static.mp4", noisy(scene(96, 128, 4), 20, sigma=8))

    def flicker_of(options: VideoOptions) -> float:
        return flicker(lab_means(torch.cat([f.pixels for f in enhanced_frames(fast, src, options)])))

    per_frame = flicker_of(VideoOptions(context_every=1, smoothing=0))  # each frame as a photo
    assert flicker_of(VideoOptions()) < 0.8 * per_frame
