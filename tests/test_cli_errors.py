"""Bad input gets one sentence naming the culprit and exit code 2, never a traceback."""
import socket

import pytest

from bench.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_unknown_dataset(capsys):
    code, err = run(capsys, "search", "face", "--dataset", "raff")
    assert code == 2
    assert err.startswith("fer-bench: error: unknown dataset 'raff'")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_model_in_space(capsys, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("schema: 1\nmodality: face\nparams:\n  model.name: {choice: [fer_cnn, resnet99]}\n")
    code, err = run(capsys, "search", "face", "--dataset", "synthetic", "--space", str(space))
    assert code == 2 and "unknown model 'resnet99'" in err and str(space) in err


def test_malformed_yaml(capsys, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("schema: 1\nparams: [unclosed\n")
    code, err = run(capsys, "search", "face", "--dataset", "synthetic", "--space", str(space))
    assert code == 2 and "not valid YAML" in err


def test_unknown_key_in_space(capsys, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("schema: 1\nmodality: face\nparams:\n  optim.lr: {float: [0.1, 0.2], logg: true}\n")
    code, err = run(capsys, "search", "face", "--dataset", "synthetic", "--space", str(space))
    assert code == 2 and "unknown key 'logg'" in err


def test_zero_samples(capsys):
    with pytest.raises(SystemExit) as info:
        main(["search", "face", "--dataset", "synthetic", "--samples", "0"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--samples: must be a positive integer, got 0" in err


def test_unreachable_address(capsys, tmp_path, cache_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, err = run(capsys, "search", "face", "--dataset", "synthetic", "--address", f"127.0.0.1:{port}",
                    "--cache-dir", str(cache_dir), "--results-dir", str(tmp_path))
    assert code == 2 and f"no Ray cluster answers at '127.0.0.1:{port}'" in err


def test_modality_mismatch(capsys):
    code, err = run(capsys, "search", "voice", "--dataset", "synthetic")
    assert code == 2 and "holds face data" in err


@pytest.mark.parametrize("value, message", [("0", "must be more than 0 seconds, got '0'"),
                                            ("abc", "must be a duration like 30m, 90s, 2h or seconds, got 'abc'")])
def test_bad_time_budget(capsys, value, message):
    code, err = run(capsys, "search", "face", "--dataset", "synthetic", "--time-budget", value)
    assert code == 2 and f"--time-budget {message}" in err
    assert len(err.strip().splitlines()) == 1


def test_the_old_spelling_of_a_family_flag_still_works_with_a_note(capsys):
    from bench.cli import build_parser

    args = build_parser().parse_args(["benchmark", "--dataset", "tess", "--modality", "voice"])
    assert args.family == "voice"
    assert "--modality is deprecated; use --family" in capsys.readouterr().err
    assert build_parser().parse_args(["benchmark", "--dataset", "tess", "--family", "voice"]).family == "voice"
    assert build_parser().parse_args(["benchmark", "--dataset", "tess"]).family == "face"
    assert capsys.readouterr().err == ""


def test_a_space_names_its_family_once(capsys, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("schema: 1\nfamily: face\nmodality: face\nparams:\n  model.name: {choice: [fer_cnn]}\n")
    code, err = run(capsys, "search", "face", "--dataset", "synthetic", "--space", str(space))
    assert code == 2 and "give the search family once" in err
