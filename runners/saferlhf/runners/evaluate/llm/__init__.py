"""The `llm` judge: an OpenAI-compatible chat client, our judge prompts and their strict parsers,
and the judge that ties them to the verdict cache (see judge.py)."""
