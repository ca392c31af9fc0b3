"""SocialFusion (second paper): frozen vision encoder, MLP connector, LoRA Llama 3.2, five social tasks."""
