"""Elastic supernet, standalone subnets and ONNX export."""

from .subnet import Subnet, SubnetOutput
from .supernet import Supernet, covering_archs, load_subnet, load_supernet, save_subnet, save_supernet

__all__ = ["Subnet", "SubnetOutput", "Supernet", "covering_archs", "load_subnet", "load_supernet", "save_subnet",
           "save_supernet"]
