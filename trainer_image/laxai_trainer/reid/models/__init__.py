"""Model: the ResNet18 + CBAM embedding network and where its first weights come from."""
