"""Truncated-SVD compression of decoder LMs (plain and activation-aware), independent of the chatbot."""
