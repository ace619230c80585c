"""One error hierarchy, one CLI wrapper (``run_cli`` with ``--debug``) and the tools' console scripts."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

from basicvsr_archival import errors
from basicvsr_archival.errors import BasicVSRError, first_line
from basicvsr_archival.tools.commands import COMMANDS, console_scripts
from basicvsr_archival.utils.cli import run_cli

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "basicvsr_archival"


def test_every_error_is_a_basicvsr_error_and_keeps_its_old_names():
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)]
    assert len(classes) == 19 and all(issubclass(c, BasicVSRError) for c in classes)
    from basicvsr_archival import apis
    from basicvsr_archival.archival import package, restore, study
    from basicvsr_archival.engine.config import ConfigError
    from basicvsr_archival.utils import checkpoint, ffmpeg, output

    assert ffmpeg.MediaError is errors.MediaError and ffmpeg.FFmpegError is errors.FFmpegError
    assert output.OutputPathError is apis.OutputPathError is errors.OutputPathError  # no second class
    assert apis.OutputExistsError is output.OutputExistsError
    assert checkpoint.CheckpointReadError is errors.CheckpointReadError
    assert issubclass(errors.CheckpointReadError, apis.CheckpointError)
    assert package.ArchiveError is errors.ArchiveError and ConfigError is errors.ConfigError
    assert issubclass(restore.RestoreError, BasicVSRError) and issubclass(study.StudyError, BasicVSRError)
    assert issubclass(errors.OutputPathError, ValueError) and issubclass(errors.FrameWriteError, OSError)


def test_first_line():
    assert first_line(ValueError("\n  bad value  \nmore")) == "bad value"
    assert first_line(KeyError("name")) == "KeyError: 'name'"  # terse: the type says what it is
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(ValueError("x"), with_type=True) == "ValueError: x"


def _raiser(exc: BaseException):
    """A tool ``main`` that raises ``exc``."""

    def main(argv):
        raise exc

    return main


def test_run_cli_one_line_errors_and_exit_codes(capsys, monkeypatch):
    monkeypatch.delenv("BASICVSR_DEBUG", raising=False)
    err = errors.ArchiveCorruptError("a.tar: member lr.mp4 is truncated\nsecond line")
    err.add_note("pass --resume to continue")
    assert run_cli(_raiser(err), []) == 1
    assert capsys.readouterr().err == "error: a.tar: member lr.mp4 is truncated; pass --resume to continue\n"
    assert run_cli(_raiser(FileNotFoundError("x.pth: not found")), []) == 1
    assert capsys.readouterr().err == "error: x.pth: not found\n"
    assert run_cli(_raiser(ZeroDivisionError("division by zero")), []) == 1
    text = capsys.readouterr().err
    assert (
        text
        == "error: unexpected ZeroDivisionError: division by zero (rerun with --debug for the traceback)\n"
    )
    assert run_cli(_raiser(KeyboardInterrupt()), []) == 130
    assert capsys.readouterr().err == "error: interrupted\n"
    assert run_cli(lambda argv: None, []) == 0 and run_cli(lambda argv: {"PSNR": 30.0}, []) == 0
    assert run_cli(lambda argv: 3, []) == 3


def test_debug_flag_and_env_alias_reraise(monkeypatch):
    monkeypatch.delenv("BASICVSR_DEBUG", raising=False)
    with pytest.raises(errors.ArchiveError, match="a: bad"):
        run_cli(_raiser(errors.ArchiveError("a: bad")), ["a", "--debug"])
    monkeypatch.setenv("BASICVSR_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run_cli(_raiser(ZeroDivisionError("x")), [])


_MISSING = {  # a tool's arguments naming a missing input, and the start of its one error line
    "archive": (["configs/archival/tiny_ci.py", "missing.mp4", "-o", "{tmp}/x.tar"], "missing.mp4: source"),
    "restore": (["missing.archive", "-o", "{tmp}/x.mp4"], "missing.archive: no such archive"),
    "verify_archive": (["missing.archive"], "missing.archive: no such archive"),
    "evaluate_archive": (["missing.archive", "--reference", "missing.mp4"], "missing.mp4: no such file"),
    "archival_study": (["configs/archival/study_tiny_ci.py", "missing.mp4", "-o", "{tmp}/w"], "missing.mp4"),
    "train": (["missing_config.py"], "missing_config.py: config file not found"),
    "test": (["missing_config.py", "missing.pth"], "missing.pth: checkpoint file not found"),
    "demo": (["missing.py", "none", "in", "{tmp}/out.mp4"], "in: no such file or folder"),
    "make_sample_video": (["--frames", "0", "{tmp}/x.mkv"], "--frames must be 1..100000, got 0"),
    "pytorch2onnx": (["missing.py", "none", "{tmp}/x.onnx"], "missing.py: config file not found"),
    "archive_collection": (["missing.py", "a.mp4", "-o", "{tmp}/s"], "missing.py: config file not found"),
    "catalog": (["missing.store"], "missing.store: not a store"),
    "plan_storage": (
        ["missing", "--access-model", "zipf:s=1,mean=1", "-o", "{tmp}/p"],
        "missing/results.json",
    ),
}


@pytest.mark.parametrize("module", sorted(COMMANDS.values()))
def test_each_tool_has_one_line_errors_and_debug(module, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BASICVSR_DEBUG", raising=False)
    monkeypatch.chdir(REPO)
    tool = importlib.import_module(f"basicvsr_archival.tools.{module}")
    args, message = _MISSING[module]
    argv = [a.format(tmp=tmp_path) for a in args]
    assert run_cli(tool.main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1, err
    with pytest.raises((BasicVSRError, FileNotFoundError)):  # --debug: the exception itself
        run_cli(tool.main, [*argv, "--debug"])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_console_scripts_and_thin_scripts():
    assert console_scripts()[0] == "basicvsr-archive = basicvsr_archival.tools.commands:archive"
    assert len(console_scripts()) == len(COMMANDS) == 13
    scripts = [*sorted((REPO / "tools").glob("*.py")), REPO / "demo" / "restoration_video_demo.py"]
    assert len(scripts) == len(COMMANDS)
    for path in scripts:
        text = path.read_text()
        assert "sys.path" not in text and len(text.splitlines()) < 15, path
        spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
        module = script.main.__module__.rsplit(".", 1)[1]
        assert module in COMMANDS.values()
        assert script.main is importlib.import_module(f"basicvsr_archival.tools.{module}").main
    for path in (REPO / "tools" / "data").glob("*.py"):
        assert "sys.path" not in path.read_text(), path


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a package file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            names.add(".".join(filter(None, [base, node.module or ""])))
    return names


def test_utils_and_models_do_not_import_apis_archival_or_tools():
    upper = ("basicvsr_archival.apis", "basicvsr_archival.archival", "basicvsr_archival.tools")
    files = [
        *sorted((PACKAGE / "utils").glob("*.py")),
        PACKAGE / "errors.py",
        PACKAGE / "models" / "builder.py",
    ]
    assert len(files) > 10
    for path in files:
        bad = sorted(m for m in _imported_modules(path) if m.startswith(upper))
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"
    seen = _imported_modules(PACKAGE / "archival" / "restore.py")  # the check sees upper imports
    assert {"basicvsr_archival.apis.streaming", "basicvsr_archival.archival.package"} <= seen
