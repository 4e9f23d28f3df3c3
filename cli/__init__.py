"""numbamlp's command line (``numbamlp ...``): thin click commands over the library."""
