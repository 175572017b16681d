"""Model tooling the node kinds use: tiny random models, onnxruntime-genai chat, dequantization."""
