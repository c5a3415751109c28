//! LeMo-NADe architects: OpenAI, Gemini, OpenAI-compatible local servers and an offline rule-following architect.
