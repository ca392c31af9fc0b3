"""jaxbgs: align video foundation models with human social perception, in JAX/Flax.

Implements Behavioral Geometric Supervision (BGS) and SocialFusion. The analysis toolkit
(`jaxbgs.data`, `jaxbgs.eval`, `python -m jaxbgs.analysis`) scores any embedding against the
released human odd-one-out judgments.
"""

__version__ = "0.1.0"
