"""The simulator: a virtual exchange and caller (``exchange``), the scenario format
(``scenario``), the ``linebox sim`` runner on the virtual clock (``runner``) and the
``linebox demo`` story told through it (``demo``)."""
