"""Corpus loaders on small fixture corpora built in each corpus's native layout.

Every fixture writes tiny tones (200 Hz, 16 kHz) under tmp_path, some as .wav and some
as .flac, so the tests also check that audio is matched by stem whatever its extension.
Durations differ between files so that a loader reading the wrong header would show.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tone
from sercloak.corpora import (
    CorpusLayoutError,
    cremad,
    emodb,
    iemocap,
    load_corpus,
    manifest,
    msp_improv,
)

# ----------------------------------------------------------------------------- helpers


def audio(path: Path, seconds: float = 0.3) -> Path:
    """A short 200 Hz tone at 16 kHz; the format follows the extension (.wav / .flac)."""
    return write_tone(path, seconds=seconds, sr=16000, freq=200.0)


def corrupt(path: Path) -> Path:
    """Random bytes under an audio name (no RIFF/fLaC header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00junk" + np.random.default_rng(0).bytes(2048))
    return path


def counts(listing) -> Counter:
    return Counter((u.emotion, u.gender) for u in listing.utterances)


def speakers(listing) -> dict[str, str]:
    return {u.speaker: u.gender for u in listing.utterances}


def durations(listing) -> dict[str, float]:
    return {u.utt_id: round(u.duration_s, 4) for u in listing.utterances}


def skipped(listing) -> dict[str, str]:
    """File name (or manifest location) -> reason."""
    return {Path(s.path).name: s.reason for s in listing.skipped}


# ----------------------------------------------------------------------------- IEMOCAP

IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _iemocap_eval(lines: list[tuple[str, str]]) -> str:
    """An EmoEvaluation dialog file: label lines interleaved with evaluator lines."""
    text = IEMOCAP_HEADER
    for i, (utt, label) in enumerate(lines):
        text += f"[{i}.2901 - {i}.8357]\t{utt}\t{label}\t[2.5000, 2.5000, 2.5000]\n"
        text += "C-E1:\tNeutral;\t()\nC-E2:\tAnger;\t(angry)\nA-F1:\tval 3; act 2; dom  3;\t()\n\n"
    return text


def make_iemocap(root: Path) -> Path:
    s1, s2 = root / "Session1", root / "Session2"
    impro = s1 / "sentences" / "wav" / "Ses01F_impro01"
    script = s1 / "sentences" / "wav" / "Ses01F_script01_1"
    audio(impro / "Ses01F_impro01_F000.wav")
    audio(impro / "Ses01F_impro01_M000.flac", 0.5)
    audio(impro / "Ses01F_impro01_F001.wav")
    audio(impro / "Ses01F_impro01_M001.wav", 0.4)  # exc -> happy
    audio(impro / "Ses01F_impro01_F002.wav")
    audio(impro / "Ses01F_impro01_M002.wav")  # fru -> excluded
    audio(impro / "Ses01F_impro01_F003.wav")  # xxx -> excluded
    audio(impro / "Ses01F_impro01_M003.flac")
    audio(impro / "Ses01F_impro01_F004.wav")  # no label line -> skipped
    corrupt(impro / "._Ses01F_impro01_F000.wav")  # macOS junk: ignored
    (impro / "notes.txt").write_text("not audio")
    audio(script / "Ses01F_script01_1_F000.wav")
    audio(script / "Ses01F_script01_1_M000.wav")
    ev1 = s1 / "dialog" / "EmoEvaluation"
    ev1.mkdir(parents=True)
    (ev1 / "Ses01F_impro01.txt").write_text(_iemocap_eval([
        ("Ses01F_impro01_F000", "neu"), ("Ses01F_impro01_M000", "ang"),
        ("Ses01F_impro01_F001", "hap"), ("Ses01F_impro01_M001", "exc"),
        ("Ses01F_impro01_F002", "sad"), ("Ses01F_impro01_M002", "fru"),
        ("Ses01F_impro01_F003", "xxx"), ("Ses01F_impro01_M003", "sad"),
        ("Ses01F_impro01_F005", "ang"),  # label without audio: not an utterance
    ]))
    (ev1 / "Ses01F_script01_1.txt").write_text(_iemocap_eval([
        ("Ses01F_script01_1_F000", "ang"), ("Ses01F_script01_1_M000", "neu"),
    ]))
    # macOS junk next to the label files: if it were read, F004 would get a label.
    (ev1 / "._Ses01F_impro01.txt").write_text(_iemocap_eval([("Ses01F_impro01_F004", "ang")]))
    (ev1 / "Categorical").mkdir()  # the release's sub-folders of per-evaluator files
    (ev1 / "Categorical" / "Ses01F_impro01_e1_cat.txt").write_text(
        "Ses01F_impro01_F004 :Anger; ()\n")

    impro2 = s2 / "sentences" / "wav" / "Ses02M_impro03"
    audio(impro2 / "Ses02M_impro03_F000.flac", 0.6)
    audio(impro2 / "Ses02M_impro03_M000.wav")
    corrupt(impro2 / "Ses02M_impro03_M001.wav")  # labelled but unreadable
    ev2 = s2 / "dialog" / "EmoEvaluation"
    ev2.mkdir(parents=True)
    # stray whitespace: spaces around the fields, trailing blanks, label in capitals
    (ev2 / "Ses02M_impro03.txt").write_text(
        IEMOCAP_HEADER
        + "[1.0 - 2.0]\tSes02M_impro03_F000\tang\t[1.5, 4.0, 4.0]\n"
        + "  [3.0 - 4.0] \t Ses02M_impro03_M000 \t HAP \t [4.0, 3.0, 3.0]   \n"
        + "C-E3:\tHappiness;\t()\n"
        + "[5.0 - 6.0]\tSes02M_impro03_M001\tneu\t[2.5, 2.5, 2.5]\n"
    )
    (s1 / "Session1_README.txt").write_text("not a session")  # a file, not a folder
    (root / "Documentation").mkdir()  # a non-session folder beside the sessions
    return root


@pytest.fixture(scope="module")
def iemocap_root(tmp_path_factory):
    """Built once per module: the tests using it only read it."""
    return make_iemocap(tmp_path_factory.mktemp("iemocap"))


def test_iemocap_counts_speakers_and_exclusions(iemocap_root):
    listing = iemocap.load(iemocap_root)
    assert listing.corpus == "iemocap"
    assert counts(listing) == {
        ("neutral", "female"): 1, ("happy", "female"): 1, ("sad", "female"): 1,
        ("angry", "female"): 1,
        ("angry", "male"): 1, ("happy", "male"): 2, ("sad", "male"): 1,
    }
    assert speakers(listing) == {
        "iemocap:Ses01F": "female", "iemocap:Ses01M": "male",
        "iemocap:Ses02F": "female", "iemocap:Ses02M": "male",
    }
    assert listing.excluded == {"fru": 1, "xxx": 1}
    by_id = {u.utt_id: u for u in listing.utterances}
    # the speaker is the session + the gender letter before the utterance number,
    # not the letter of the dialog (Ses01F_impro01_M003 is spoken by Ses01M)
    m003 = by_id["iemocap:Ses01F_impro01_M003"]
    assert (m003.speaker, m003.gender, m003.emotion) == ("iemocap:Ses01M", "male", "sad")
    f000 = by_id["iemocap:Ses02M_impro03_F000"]
    assert (f000.speaker, f000.gender, f000.emotion) == ("iemocap:Ses02F", "female", "angry")
    assert by_id["iemocap:Ses01F_impro01_M001"].emotion == "happy"  # exc merged into happy
    assert by_id["iemocap:Ses02M_impro03_M000"].emotion == "happy"  # whitespace, capitals
    assert by_id["iemocap:Ses01F_impro01_M000"].path.suffix == ".flac"
    assert all(u.corpus == "iemocap" for u in listing.utterances)
    assert durations(listing) == {
        "iemocap:Ses01F_impro01_F000": 0.3, "iemocap:Ses01F_impro01_M000": 0.5,
        "iemocap:Ses01F_impro01_F001": 0.3, "iemocap:Ses01F_impro01_M001": 0.4,
        "iemocap:Ses01F_impro01_F002": 0.3, "iemocap:Ses01F_impro01_M003": 0.3,
        "iemocap:Ses02M_impro03_F000": 0.6, "iemocap:Ses02M_impro03_M000": 0.3,
    }


def test_iemocap_skips_unlabelled_and_corrupt_and_ignores_macos_junk(iemocap_root):
    listing = iemocap.load(iemocap_root)
    reasons = skipped(listing)
    assert set(reasons) == {"Ses01F_impro01_F004.wav", "Ses02M_impro03_M001.wav"}
    assert reasons["Ses01F_impro01_F004.wav"].startswith("no label line in ")
    assert reasons["Ses01F_impro01_F004.wav"].endswith("Ses01F_impro01.txt")
    assert reasons["Ses02M_impro03_M001.wav"].startswith("unreadable audio")
    assert not any(u.path.name.startswith("._") for u in listing.utterances)


def test_iemocap_scripted_only_on_request(iemocap_root):
    root = iemocap_root
    default = iemocap.load(root)
    assert not [u for u in default.utterances if "script" in u.utt_id]
    with_scripted = load_corpus("iemocap", root, scripted=True)
    added = {u.utt_id: (u.speaker, u.gender, u.emotion) for u in with_scripted.utterances
             if "script" in u.utt_id}
    assert added == {
        "iemocap:Ses01F_script01_1_F000": ("iemocap:Ses01F", "female", "angry"),
        "iemocap:Ses01F_script01_1_M000": ("iemocap:Ses01M", "male", "neutral"),
    }
    assert len(with_scripted.utterances) == len(default.utterances) + 2
    assert with_scripted.excluded == default.excluded


def test_iemocap_session_without_emoevaluation_is_a_layout_error(tmp_path):
    audio(tmp_path / "Session1" / "sentences" / "wav" / "Ses01F_impro01" /
          "Ses01F_impro01_F000.wav")
    with pytest.raises(CorpusLayoutError, match="EmoEvaluation"):
        iemocap.load(tmp_path)


def test_iemocap_folder_names_ignore_case(tmp_path):
    dialog = tmp_path / "session1" / "Sentences" / "WAV" / "Ses01F_impro01"
    audio(dialog / "Ses01F_impro01_F000.wav")
    ev = tmp_path / "session1" / "Dialog" / "emoevaluation"
    ev.mkdir(parents=True)
    (ev / "Ses01F_impro01.txt").write_text(_iemocap_eval([("Ses01F_impro01_F000", "sad")]))
    listing = iemocap.load(tmp_path)
    assert [(u.utt_id, u.emotion) for u in listing.utterances] == [
        ("iemocap:Ses01F_impro01_F000", "sad")]


# ----------------------------------------------------------------------------- CREMA-D

CREMAD_DEMOGRAPHICS = (
    "ActorID,Age,Sex,Race,Ethnicity\n"
    "1001,51,Male,Caucasian,Not Hispanic\n"
    "1002,21,Female,Caucasian,Not Hispanic\n"
    "1003,21,Male,Caucasian,Not Hispanic\n"
    "1076,25,Female,African American,Not Hispanic\n"
)


def make_cremad(root: Path, audio_dir: str = "AudioWAV",
                demographics: str = CREMAD_DEMOGRAPHICS) -> Path:
    wav = root / audio_dir
    audio(wav / "1001_DFA_ANG_XX.wav")
    audio(wav / "1001_DFA_HAP_XX.flac", 0.5)
    audio(wav / "1001_IEO_SAD_HI.wav")
    audio(wav / "1001_IEO_NEU_XX.wav")
    audio(wav / "1001_DFA_DIS_XX.wav")
    audio(wav / "1001_DFA_FEA_XX.wav")
    audio(wav / "1002_DFA_ANG_XX.flac", 0.4)
    audio(wav / "1002_ITS_NEU_XX.wav")
    audio(wav / "1002_DFA_FEA_XX.wav")
    audio(wav / "1076_MTI_SAD_XX.wav")  # known broken in the release
    corrupt(wav / "1003_DFA_ANG_XX.wav")
    audio(wav / "1099_DFA_ANG_XX.wav")  # actor missing from the demographics
    audio(wav / "1001_DFA_XYZ_XX.wav")  # unknown emotion code
    (wav / "readme.txt").write_text("not audio")
    (root / "VideoDemographics.csv").write_text(demographics)
    return root


@pytest.fixture(scope="module")
def cremad_root(tmp_path_factory):
    """Built once per module: the tests using it only read it."""
    return make_cremad(tmp_path_factory.mktemp("cremad"))


def test_cremad_counts_speakers_and_exclusions(cremad_root):
    listing = cremad.load(cremad_root)
    assert listing.corpus == "cremad"
    assert counts(listing) == {
        ("angry", "male"): 1, ("happy", "male"): 1, ("sad", "male"): 1, ("neutral", "male"): 1,
        ("angry", "female"): 1, ("neutral", "female"): 1,
    }
    assert speakers(listing) == {"cremad:1001": "male", "cremad:1002": "female"}
    assert listing.excluded == {"DIS": 1, "FEA": 2}
    assert durations(listing) == {
        "cremad:1001_DFA_ANG_XX": 0.3, "cremad:1001_DFA_HAP_XX": 0.5,
        "cremad:1001_IEO_SAD_HI": 0.3, "cremad:1001_IEO_NEU_XX": 0.3,
        "cremad:1002_DFA_ANG_XX": 0.4, "cremad:1002_ITS_NEU_XX": 0.3,
    }


def test_cremad_skips_broken_corrupt_unknown_actor_and_code(cremad_root):
    listing = cremad.load(cremad_root)
    reasons = skipped(listing)
    assert set(reasons) == {
        "1076_MTI_SAD_XX.wav", "1003_DFA_ANG_XX.wav", "1099_DFA_ANG_XX.wav",
        "1001_DFA_XYZ_XX.wav",
    }
    assert reasons["1076_MTI_SAD_XX.wav"] == "known broken file in the CREMA-D release"
    assert reasons["1003_DFA_ANG_XX.wav"].startswith("unreadable audio")
    assert reasons["1099_DFA_ANG_XX.wav"] == (
        "actor 1099 has no usable Sex in VideoDemographics.csv")
    assert reasons["1001_DFA_XYZ_XX.wav"] == "unknown emotion code 'XYZ'"


def test_cremad_folder_case_and_whitespace_in_demographics(tmp_path):
    messy = (
        "\ufeffActorID , Age , Sex , Race , Ethnicity\n"
        " 1001 , 51 ,  Male , Caucasian , Not Hispanic\n"
        "1002,21, female ,Caucasian,Not Hispanic  \n"
        "1003,21,MALE,Caucasian,Not Hispanic\n"
        "\n"
    )
    root = make_cremad(tmp_path, audio_dir="audiowav", demographics=messy)
    listing = load_corpus("CREMA-D", root)
    assert listing.corpus == "cremad"
    assert speakers(listing) == {"cremad:1001": "male", "cremad:1002": "female"}
    assert sum(counts(listing).values()) == 6
    assert listing.excluded == {"DIS": 1, "FEA": 2}
    # 1076 is not in this table, but the broken-file rule comes first
    assert skipped(listing)["1076_MTI_SAD_XX.wav"] == "known broken file in the CREMA-D release"


def test_cremad_demographics_without_sex_column(tmp_path):
    make_cremad(tmp_path, demographics="ActorID,Age,Race\n1001,51,Caucasian\n")
    with pytest.raises(CorpusLayoutError, match="ActorID and Sex"):
        cremad.load(tmp_path)


# ----------------------------------------------------------------------------- MSP-Improv

MSP_EVALUATION = """\
UTD-IMPROV-S01A-F01-T-FM01.avi; A; A:3.0; V:2.5; D:2.0 ; N:2.0;
mpc-Angry; Angry; Angry; A:3.0; V:2.0; D:3.0; N:4.0;
mpc-Sad; Sad; Sad; A:2.0; V:2.0; D:2.0; N:4.0;

UTD-IMPROV-S01A-F01-S-FM01.avi; H; A:3.5; V:4.0; D:3.0 ; N:3.0;
mpc-Neutral; Neutral; Neutral; A:3.0; V:3.0; D:3.0; N:3.0;

   UTD-IMPROV-S01A-M01-T-MF01.avi ;  S ; A:2.0; V:1.5; D:2.0 ; N:2.0;
UTD-IMPROV-S01A-M01-S-MF01.avi; N; A:3.0; V:3.0; D:3.0 ; N:3.0;
UTD-IMPROV-S01A-F01-R-FM01.avi; N; A:3.0; V:3.0; D:3.0 ; N:3.0;
UTD-IMPROV-S01A-M01-P-MF01.avi; A; A:4.0; V:2.0; D:4.0 ; N:2.0;
UTD-IMPROV-S02B-M02-T-MF02.avi; O; A:3.0; V:3.0; D:3.0 ; N:3.0;
mpc-Other; Other; Surprise; A:3.0; V:3.0; D:3.0; N:3.0;
UTD-IMPROV-S02B-F02-T-FM02.avi; X; A:3.0; V:3.0; D:3.0 ; N:3.0;
UTD-IMPROV-S02B-F02-S-FM02.avi; N; A:3.0; V:3.0; D:3.0 ; N:3.0;
UTD-IMPROV-S02B-F02-T-FM09.avi; A; A:3.0; V:3.0; D:3.0 ; N:3.0;
"""


def make_msp(root: Path) -> Path:
    s1, s2 = root / "session1" / "S01A", root / "session2" / "S02B"
    audio(s1 / "T" / "MSP-IMPROV-S01A-F01-T-FM01.wav")
    audio(s1 / "S" / "MSP-IMPROV-S01A-F01-S-FM01.flac", 0.5)
    audio(s1 / "T" / "MSP-IMPROV-S01A-M01-T-MF01.wav")
    audio(s1 / "S" / "MSP-IMPROV-S01A-M01-S-MF01.wav", 0.4)
    audio(s1 / "R" / "MSP-IMPROV-S01A-F01-R-FM01.wav")
    audio(s1 / "P" / "MSP-IMPROV-S01A-M01-P-MF01.flac")
    audio(s2 / "T" / "MSP-IMPROV-S02B-M02-T-MF02.wav")  # O: other
    audio(s2 / "T" / "MSP-IMPROV-S02B-F02-T-FM02.wav")  # X: no agreement
    corrupt(s2 / "S" / "MSP-IMPROV-S02B-F02-S-FM02.wav")
    audio(s2 / "T" / "MSP-IMPROV-S02B-F02-T-FM03.wav")  # no consensus line
    (s1 / "T" / "transcript.txt").write_text("not audio")
    (root / "Evaluation.txt").write_text(MSP_EVALUATION)
    return root


@pytest.fixture(scope="module")
def msp_root(tmp_path_factory):
    """Built once per module: the tests using it only read it."""
    return make_msp(tmp_path_factory.mktemp("msp"))


def test_msp_improv_default_keeps_target_and_other_improvised(msp_root):
    listing = msp_improv.load(msp_root)
    assert listing.corpus == "msp_improv"
    assert counts(listing) == {
        ("angry", "female"): 1, ("happy", "female"): 1,
        ("sad", "male"): 1, ("neutral", "male"): 1,
    }
    assert speakers(listing) == {"msp_improv:F01": "female", "msp_improv:M01": "male"}
    assert listing.excluded == {
        "recording type R": 1, "recording type P": 1, "other": 1, "no agreement": 1,
    }
    assert durations(listing) == {
        "msp_improv:MSP-IMPROV-S01A-F01-T-FM01": 0.3,
        "msp_improv:MSP-IMPROV-S01A-F01-S-FM01": 0.5,
        "msp_improv:MSP-IMPROV-S01A-M01-T-MF01": 0.3,
        "msp_improv:MSP-IMPROV-S01A-M01-S-MF01": 0.4,
    }
    by_id = {u.utt_id: u.emotion for u in listing.utterances}
    # consensus letter, not the evaluators' lines that follow it
    assert by_id["msp_improv:MSP-IMPROV-S01A-F01-T-FM01"] == "angry"
    assert by_id["msp_improv:MSP-IMPROV-S01A-F01-S-FM01"] == "happy"
    assert by_id["msp_improv:MSP-IMPROV-S01A-M01-T-MF01"] == "sad"  # stray whitespace


def test_msp_improv_skips_corrupt_and_unlabelled(msp_root):
    listing = msp_improv.load(msp_root)
    reasons = skipped(listing)
    assert set(reasons) == {"MSP-IMPROV-S02B-F02-S-FM02.wav", "MSP-IMPROV-S02B-F02-T-FM03.wav"}
    assert reasons["MSP-IMPROV-S02B-F02-S-FM02.wav"].startswith("unreadable audio")
    assert reasons["MSP-IMPROV-S02B-F02-T-FM03.wav"] == "no consensus line in Evaluation.txt"


def test_msp_improv_all_recording_types(msp_root):
    listing = load_corpus("MSP-Improv", msp_root, types="TSRP")
    assert counts(listing) == {
        ("angry", "female"): 1, ("happy", "female"): 1, ("neutral", "female"): 1,
        ("sad", "male"): 1, ("neutral", "male"): 1, ("angry", "male"): 1,
    }
    assert listing.excluded == {"other": 1, "no agreement": 1}


def test_msp_improv_evaluation_without_consensus_lines(tmp_path):
    audio(tmp_path / "session1" / "S01A" / "T" / "MSP-IMPROV-S01A-F01-T-FM01.wav")
    (tmp_path / "Evaluation.txt").write_text("mpc-Angry; Angry; A:3.0; V:2.0;\n")
    with pytest.raises(CorpusLayoutError, match="UTD-IMPROV-S01A-F01-T-FM01"):
        msp_improv.load(tmp_path)


def test_msp_improv_evaluation_without_audio(tmp_path):
    (tmp_path / "Evaluation.txt").write_text(MSP_EVALUATION)
    with pytest.raises(CorpusLayoutError, match="no MSP-IMPROV-"):
        msp_improv.load(tmp_path)



def test_msp_improv_ignores_macos_junk_in_the_same_folder(tmp_path):
    root = make_msp(tmp_path)
    corrupt(root / "session1" / "S01A" / "T" / "._MSP-IMPROV-S01A-F01-T-FM01.wav")
    listing = msp_improv.load(root)
    assert "msp_improv:MSP-IMPROV-S01A-F01-T-FM01" in durations(listing)
    assert not any(Path(s.path).name.startswith("._") for s in listing.skipped)


def test_msp_improv_ignores_macos_junk_in_a_macosx_folder(tmp_path):
    real = tmp_path / "Session1" / "S01A" / "T" / "MSP-IMPROV-S01A-F01-T-FM01.wav"
    audio(real)
    corrupt(tmp_path / "__MACOSX" / "Session1" / "S01A" / "T" / f"._{real.name}")
    (tmp_path / "Evaluation.txt").write_text(MSP_EVALUATION)
    listing = msp_improv.load(tmp_path)
    assert [u.path for u in listing.utterances] == [real]
    assert not listing.skipped

# ----------------------------------------------------------------------------- EmoDB

EMODB_FILES = {  # stem -> (speaker gender, emotion or None)
    "03a01Wa": ("male", "angry"),
    "08a01Fa": ("female", "happy"),
    "09b02Tb": ("female", "sad"),
    "10a02Na": ("male", "neutral"),
    "11a04Wc": ("male", "angry"),
    "12a01Fb": ("male", "happy"),
    "13a05Ta": ("female", "sad"),
    "14a01Nb": ("female", "neutral"),
    "15b01Tb": ("male", "sad"),
    "16a01Wb": ("female", "angry"),
    "11a04Ld": ("male", None),  # boredom
    "13a05Ea": ("female", None),  # disgust
    "16b10Aa": ("female", None),  # fear
}


def make_emodb(root: Path, wav_dir: str = "wav") -> Path:
    wav = root / wav_dir
    for i, stem in enumerate(EMODB_FILES):
        audio(wav / f"{stem}{'.flac' if i % 3 == 1 else '.wav'}", 0.3 + 0.1 * (i % 2))
    corrupt(wav / "03a02Wb.wav")
    audio(wav / "07a01Wa.wav")  # not one of the ten speakers
    audio(wav / "03a01Xa.wav")  # unknown emotion letter
    audio(wav / "silence.wav")  # not SSTTTEV
    (root / "erkennung.txt").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def emodb_root(tmp_path_factory):
    """Built once per module: the tests using it only read it."""
    return make_emodb(tmp_path_factory.mktemp("emodb"))


def test_emodb_counts_speakers_and_exclusions(emodb_root):
    listing = emodb.load(emodb_root)
    assert listing.corpus == "emodb"
    assert counts(listing) == {
        ("angry", "male"): 2, ("happy", "male"): 1, ("neutral", "male"): 1, ("sad", "male"): 1,
        ("angry", "female"): 1, ("happy", "female"): 1, ("neutral", "female"): 1,
        ("sad", "female"): 2,
    }
    assert speakers(listing) == {
        "emodb:03": "male", "emodb:10": "male", "emodb:11": "male", "emodb:12": "male",
        "emodb:15": "male", "emodb:08": "female", "emodb:09": "female", "emodb:13": "female",
        "emodb:14": "female", "emodb:16": "female",
    }
    assert listing.excluded == {"boredom": 1, "disgust": 1, "fear": 1}
    kept = {stem: v for stem, v in EMODB_FILES.items() if v[1] is not None}
    assert {u.utt_id: (u.gender, u.emotion) for u in listing.utterances} == {
        f"emodb:{stem}": v for stem, v in kept.items()}
    expected = {f"emodb:{stem}": round(0.3 + 0.1 * (i % 2), 4)
                for i, stem in enumerate(EMODB_FILES) if stem in kept}
    assert durations(listing) == expected
    assert {u.path.suffix for u in listing.utterances} == {".wav", ".flac"}


def test_emodb_skips_corrupt_unknown_speaker_and_letter(emodb_root):
    listing = emodb.load(emodb_root)
    reasons = skipped(listing)
    assert set(reasons) == {"03a02Wb.wav", "07a01Wa.wav", "03a01Xa.wav", "silence.wav"}
    assert reasons["03a02Wb.wav"].startswith("unreadable audio")
    assert reasons["07a01Wa.wav"] == "unknown EmoDB speaker '07'"
    assert reasons["03a01Xa.wav"] == "unknown emotion letter 'X'"
    assert reasons["silence.wav"].startswith("file name does not follow SSTTTEV")


def test_emodb_folder_name_case_and_whitespace(tmp_path):
    listing = load_corpus("Emo-DB", make_emodb(tmp_path, wav_dir="WAV "))
    assert listing.corpus == "emodb"
    assert len(listing.utterances) == 10


# ----------------------------------------------------------------------------- manifest

MANIFEST = """\
path , speaker , gender , emotion
audio/a1.wav , spk1 , F , ang
audio/a2.flac,spk1,female,happiness
 audio/a3.wav,spk2,M, Sad
audio/a4.wav,spk2,male,neutral
audio/a5.wav,spk2,m,fear
audio/a6.wav,spk1,f,angy
audio/missing.wav,spk1,f,sad
audio/corrupt.wav,spk2,m,neu
audio/a7.wav,spk3,x,sad
audio/a8.wav,,f,sad
audio/a9.wav,spk3,f,
"""


def make_manifest(root: Path, name: str = "manifest.csv", text: str = MANIFEST) -> Path:
    audio(root / "audio" / "a1.wav")
    audio(root / "audio" / "a2.flac", 0.5)
    audio(root / "audio" / "a3.wav", 0.4)
    for stem in ("a4", "a5", "a6", "a7", "a8", "a9"):
        audio(root / "audio" / f"{stem}.wav")
    corrupt(root / "audio" / "corrupt.wav")
    csv_path = root / name
    csv_path.write_text(text)
    return csv_path


def test_manifest_counts_aliases_and_exclusions(tmp_path):
    listing = manifest.load(make_manifest(tmp_path))
    assert listing.corpus == "manifest"  # the file's stem when no name is given
    assert {u.utt_id: (u.speaker, u.gender, u.emotion) for u in listing.utterances} == {
        "manifest:a1": ("manifest:spk1", "female", "angry"),
        "manifest:a2": ("manifest:spk1", "female", "happy"),
        "manifest:a3": ("manifest:spk2", "male", "sad"),
        "manifest:a4": ("manifest:spk2", "male", "neutral"),
    }
    assert listing.excluded == {"fear": 1, "(none)": 1}
    assert durations(listing) == {
        "manifest:a1": 0.3, "manifest:a2": 0.5, "manifest:a3": 0.4, "manifest:a4": 0.3}
    assert all(u.path.is_absolute() and u.path.is_file() for u in listing.utterances)


def test_manifest_skips_with_reasons(tmp_path):
    csv_path = make_manifest(tmp_path)
    listing = manifest.load(csv_path)
    reasons = skipped(listing)
    assert set(reasons) == {
        "a6.wav", "manifest.csv:8", "corrupt.wav", "a7.wav", "a8.wav"}
    assert reasons["a6.wav"] == f"unknown emotion label 'angy' ({csv_path}:7)"
    assert reasons["manifest.csv:8"] == (
        f"no such audio file {tmp_path / 'audio' / 'missing.wav'}")
    assert reasons["corrupt.wav"].startswith("unreadable audio")
    assert reasons["a7.wav"] == f"unknown gender 'x' ({csv_path}:10)"
    assert reasons["a8.wav"] == f"empty speaker ({csv_path}:11)"


def test_manifest_optional_utt_id_column(tmp_path):
    csv_path = make_manifest(
        tmp_path, text="utt_id,path,speaker,gender,emotion\nfirst, audio/a1.wav,s,f,sad\n"
                       ",audio/a2.flac,s,f,joy\n")
    listing = manifest.load(csv_path, corpus="mine")
    assert [(u.utt_id, u.emotion) for u in listing.utterances] == [
        ("mine:first", "sad"), ("mine:a2", "happy")]


def test_manifest_missing_column(tmp_path):
    csv_path = make_manifest(tmp_path, text="path,speaker,emotion\naudio/a1.wav,s,ang\n")
    with pytest.raises(CorpusLayoutError, match="lacks the column.s. gender"):
        manifest.load(csv_path)


def test_manifest_reason_names_the_physical_line_after_a_blank_line(tmp_path):
    csv_path = make_manifest(
        tmp_path, text="path,speaker,gender,emotion\naudio/a1.wav,s,f,ang\n\n"
                       "audio/a6.wav,s,f,angy\n")
    listing = manifest.load(csv_path)
    assert [s.reason for s in listing.skipped] == [
        f"unknown emotion label 'angy' ({csv_path}:4)"]


def test_load_corpus_manifest_by_unknown_name(tmp_path, monkeypatch):
    make_manifest(tmp_path, name="x.csv")
    monkeypatch.chdir(tmp_path)
    listing = load_corpus("mycorpus", "x.csv")
    assert listing.corpus == "mycorpus"
    assert sorted(u.utt_id for u in listing.utterances) == [
        "mycorpus:a1", "mycorpus:a2", "mycorpus:a3", "mycorpus:a4"]
    assert {u.speaker for u in listing.utterances} == {"mycorpus:spk1", "mycorpus:spk2"}
    assert all(u.path.is_file() for u in listing.utterances)


def test_load_corpus_manifest_folder(tmp_path):
    make_manifest(tmp_path)
    listing = load_corpus("My-Corpus", tmp_path)
    assert listing.corpus == "my_corpus"
    assert len(listing.utterances) == 4


def test_load_corpus_unknown_name_without_manifest(tmp_path):
    with pytest.raises(CorpusLayoutError, match="unknown corpus 'nosuch'.*cremad.*iemocap"):
        load_corpus("nosuch", tmp_path)


# ----------------------------------------------------------------------------- all loaders


@pytest.mark.parametrize("name, expected", [
    ("iemocap", r"Session1 \.\.\. Session5 .*EmoEvaluation"),
    ("IEMOCAP", r"Session1 \.\.\. Session5"),
    ("cremad", r"AudioWAV/.*1001_DFA_ANG_XX.*VideoDemographics\.csv"),
    ("crema_d", r"AudioWAV/=no, VideoDemographics\.csv=no"),
    ("msp_improv", r"Evaluation\.txt.*MSP-IMPROV-S01A-F01-T-FM01"),
    ("mspimprov", r"Evaluation\.txt"),
    ("msp", r"Evaluation\.txt"),
    ("emodb", r"wav/ with files like 03a01Wa"),
    ("emo_db", r"wav/"),
])
def test_empty_folder_is_a_layout_error_naming_what_was_expected(tmp_path, name, expected):
    with pytest.raises(CorpusLayoutError, match=expected):
        load_corpus(name, tmp_path)


def test_manifest_loader_on_empty_folder(tmp_path):
    with pytest.raises(CorpusLayoutError, match=r"manifest\.csv does not exist"):
        manifest.load(tmp_path)


def test_missing_folder_is_a_layout_error(tmp_path):
    for name in ("iemocap", "cremad", "msp_improv", "emodb"):
        with pytest.raises(CorpusLayoutError):
            load_corpus(name, tmp_path / "does-not-exist")


@pytest.mark.parametrize("name, module", [
    ("iemocap", iemocap), ("cremad", cremad), ("msp_improv", msp_improv), ("emodb", emodb),
])
def test_load_corpus_dispatches_to_the_loader(request, name, module):
    root = request.getfixturevalue(f"{name.split('_')[0]}_root")
    via_dispatch, direct = load_corpus(name, root), module.load(root)
    assert via_dispatch.corpus == name
    assert via_dispatch.utterances == direct.utterances
    assert via_dispatch.excluded == direct.excluded
    assert via_dispatch.skipped == direct.skipped
