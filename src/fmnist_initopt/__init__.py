"""fmnist-initopt: which weight initialisation and optimizer to pair, measured on FashionMNIST."""
