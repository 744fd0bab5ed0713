"""`warden sim`: simulated vLLM OpenAI servers, for running and testing Warden without a GPU."""
