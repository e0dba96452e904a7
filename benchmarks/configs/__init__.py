"""Dataset/architecture setups of the image benchmarks (Fashion-MNIST default, CIFAR10/STL10 GPU configs)."""
