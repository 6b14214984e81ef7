"""Meta-training of the tracker's learned parts (beside the core, as pytracking's ltr/).

``cache`` runs the frozen backbone once over the training clips, ``episodes`` draws episodes
that mirror the online procedure, ``model`` runs the core's own projection and solver on them
with gradients, ``trainer`` is the loop (DDP-ready) and ``__main__`` the command line.
"""
