"""Drafting: a voice-message transcript → a draft work order (工单草稿).

    from gateway.drafting import load_drafter
    drafter = load_drafter()                      # packaged taxonomy and gazetteer
    draft = drafter.draft(job, text, confidence, now)

Modules: ``normalize`` (numerals, masking), ``taxonomy`` (categories, topics,
urgency rules), ``gazetteer`` (places), ``urgency`` (time limits over the
Chinese working-day calendar), ``drafter`` (composition), ``report``
(accuracy over the fixture transcripts).
"""
from gateway.drafting.data_files import DataFileError
from gateway.drafting.drafter import Analysis, Drafter, load_drafter

__all__ = ["Analysis", "DataFileError", "Drafter", "load_drafter"]
