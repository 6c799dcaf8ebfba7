# Populated by the modules of this subpackage.
