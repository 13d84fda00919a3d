"""Elastic supernet, standalone subnets and ONNX export."""

from .subnet import Subnet, SubnetOutput
from .supernet import Supernet, covering_archs, load_supernet, save_supernet

__all__ = ["Subnet", "SubnetOutput", "Supernet", "covering_archs", "load_supernet", "save_supernet"]
