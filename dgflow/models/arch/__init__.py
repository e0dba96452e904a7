"""Network architectures shipped with dgflow."""
from .dcgan import DCGANGenerator, SmallCNNClassifier, SNDCGANDiscriminator, WGANGPCritic
from .mlp import MLPCritic, MLPGenerator, mlp
from .vae import ConvVAE, negative_elbo

__all__ = ["MLPCritic", "MLPGenerator", "mlp", "DCGANGenerator", "WGANGPCritic", "SNDCGANDiscriminator",
           "SmallCNNClassifier", "ConvVAE", "negative_elbo"]
