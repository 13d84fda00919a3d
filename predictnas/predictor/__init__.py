"""The accuracy predictor stage: evaluated-subnet store, zero-cost proxies, XGBoost WER predictor."""

from .features import FeatureSpec
from .model import AccuracyPredictor
from .store import EvalRecord, EvalStore, SQLiteStore

__all__ = ["AccuracyPredictor", "EvalRecord", "EvalStore", "FeatureSpec", "SQLiteStore"]
