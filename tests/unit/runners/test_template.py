"""Golden strings of the reference prompt template (reference §1.2)."""

import pytest
from saferlhf.runners.common.template import (
    format_prompt,
    format_training_text,
    split_prompt_response,
)


def test_single_turn_prompt_matches_the_reference_with_no_space_after_assistant():
    assert format_prompt("hello", "</s>") == "BEGINNING OF CONVERSATION: USER: hello ASSISTANT:"


def test_multi_turn_prompt_appends_eos_after_each_assistant_turn_and_ends_on_assistant():
    text = format_prompt(["hi", "Hello!", "how are you?"], "</s>")
    assert text == (
        "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:Hello!</s>USER: how are you? ASSISTANT:"
    )


def test_a_one_element_dialogue_formats_like_a_plain_string():
    assert format_prompt(("hello",), "</s>") == format_prompt("hello", "</s>")


def test_training_text_appends_the_response_directly_and_eos_as_literal_text():
    prompt = format_prompt("hello", "<|endoftext|>")
    assert format_training_text(prompt, "Hi there.", "<|endoftext|>") == (
        "BEGINNING OF CONVERSATION: USER: hello ASSISTANT:Hi there.<|endoftext|>"
    )


def test_split_prompt_response_cuts_at_the_last_assistant_marker():
    text = format_prompt(["a", "b", "c"], "</s>") + "d</s>"
    prompt, response = split_prompt_response(text, eos_token="</s>")
    assert prompt == format_prompt(["a", "b", "c"], "</s>")
    assert response == "d"


def test_split_prompt_response_keeps_an_assistant_word_inside_the_prompt():
    text = format_prompt("say ASSISTANT: twice", "</s>") + "ok"
    assert split_prompt_response(text) == (format_prompt("say ASSISTANT: twice", "</s>"), "ok")


def test_even_length_dialogue_is_rejected():
    with pytest.raises(ValueError, match="odd number of turns"):
        format_prompt(["hi", "hello"], "</s>")


def test_text_without_the_template_cannot_be_split():
    with pytest.raises(ValueError, match="ASSISTANT:"):
        split_prompt_response("just some text")
