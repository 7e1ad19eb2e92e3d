"""Doubles of what lies outside Charter (an LLM API, a payment provider, a CRM).

``ScriptedModel`` (in ``charter.models``) drives the loop without an LLM; ``FakeOpenAIServer``
answers like an OpenAI-compatible endpoint and ``FakeAnthropicServer`` like Anthropic's API;
``charter.testing.systems`` simulates the CRM, ticketing and billing systems the demo agent
works against, each keeping its own ledger.
"""

from charter.testing.fake_anthropic import FakeAnthropicServer
from charter.testing.fake_openai import FakeOpenAIServer

__all__ = ["FakeAnthropicServer", "FakeOpenAIServer"]
