"""Our inference engine: token ids in, token ids and log-probabilities out. Knows nothing of prompts or the store."""
