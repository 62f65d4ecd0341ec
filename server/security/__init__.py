"""Identity, policy and crypto: who the caller is, what they may see and do, and how values are sealed."""
