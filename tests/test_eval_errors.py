"""The word-error breakdown (tools/eval_errors.py) on transcripts with known errors (real jiwer alignments)."""

from predictnas.evaluate import speaker_wers, word_errors


def test_word_errors_counts_kinds_and_doubled_letters():
    rows = [
        {"reference": "turn off the room light", "hypothesis": "turn of the rom light", "speaker": "a"},
        {"reference": "add milk to the list", "hypothesis": "add milk the list please", "speaker": "b"},
        {"reference": "call ben", "hypothesis": "call ben", "speaker": "b"},
    ]
    errors = word_errors(rows)
    assert (errors["substitutions"], errors["deletions"], errors["insertions"]) == (2, 1, 1)
    assert errors["reference_words"] == 12
    assert errors["substituted"] == {("off", "of"): 1, ("room", "rom"): 1}
    assert errors["deleted"] == {"to": 1} and errors["inserted"] == {"please": 1}
    # off, room, add, call: words with a doubled letter; off and room lost it, add and call were right
    assert errors["doubled_letter_words"] == 4
    assert errors["doubled_letter_errors"] == 2 and errors["doubled_written_once"] == 2
    assert abs(errors["wer"] - 4 / 12) < 1e-12
    wers = speaker_wers(rows)
    assert wers["a"] == 2 / 5 and wers["b"] == 2 / 7
