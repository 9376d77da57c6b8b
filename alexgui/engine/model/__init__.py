"""The networks: the paper's two towers and torchvision's AlexNet, LRN, tower placement, summary, the model zoo."""
