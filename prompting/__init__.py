"""Pure prompt logic: templates, delimiters, guardrails, providers, strategies, assertions, suites, runner.

Never imports streamlit, sqlmodel or the engine; models are reached only through `providers.Provider`.
"""
