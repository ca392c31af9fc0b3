"""The App. D prompts and the answer letters a class is read from."""

import numpy as np
import pytest

from jaxbgs.errors import InputError
from jaxbgs.socialfusion import prompts
from jaxbgs.socialfusion.data.samples import CLASSES


def test_prompts_list_their_options_in_order():
    text = prompts.prompt("emotion")
    assert "(a) neutral (b) happiness" in text and text.index("(h) contempt") > text.index("(g) anger")
    gesture = prompts.prompt("gesture")
    assert "\n(aa) thumb index gesture with both hands at the same time\n" in gesture
    assert "(ag) only thumb and index fingers" in gesture and "(ah)" not in gesture
    assert "'Yes'" in prompts.prompt("lam") and "(X,Y)" in prompts.prompt("gaze")
    assert prompts.answers("lam") == ("No", "Yes") and prompts.answers("gaze") == ()
    assert prompts.answers("gesture")[-1] == "ag" and len(prompts.answers("pisc_relation")) == 6
    with pytest.raises(InputError, match="unknown task"):
        prompts.prompt("pose")


def test_every_gesture_but_no_gesture_is_an_option():
    idx = prompts.option_index("gesture")
    names = CLASSES["gesture"]
    assert idx[names.index("no_gesture")] == -1 and sorted(idx[idx >= 0].tolist()) == list(range(33))
    assert idx[names.index("call")] == 0 and idx[names.index("hand_heart2")] == 32
    for task in ("emotion", "pisc_domain", "pisc_relation", "lam"):
        np.testing.assert_array_equal(prompts.option_index(task), np.arange(len(CLASSES[task])))


class _Letters:
    """A tokenizer stand-in: one id per distinct string."""

    def __init__(self, shared=False):
        self.shared, self.vocab = shared, {}

    def encode(self, text, add_special_tokens=False):
        key = text[0] if self.shared else text
        return [self.vocab.setdefault(key, len(self.vocab))]


def test_answer_tokens_must_be_distinct():
    assert len(set(prompts.answer_token_ids(_Letters(), "gesture").tolist())) == 33
    with pytest.raises(InputError, match="share first tokens"):
        prompts.answer_token_ids(_Letters(shared=True), "gesture")  # 'aa' and 'a' start alike
