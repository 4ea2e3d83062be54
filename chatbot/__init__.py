"""Multilingual customer-service chatbot: intent classification on a compressed, LoRA-tuned decoder LM."""
