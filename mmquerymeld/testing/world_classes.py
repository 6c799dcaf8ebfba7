"""The world's vocabularies: things, stuff, colours, the LVIS-style and 16-bit label spaces."""
from typing import Dict, List, Tuple

THING_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star', 'cross')
#: COCO-like non-contiguous category ids of the things (and of the stuff below).
THING_CAT_IDS: Tuple[int, ...] = (1, 2, 4, 7, 9)
STUFF_CLASSES: Tuple[str, ...] = ('sky', 'grass', 'water', 'sand', 'wall')
STUFF_CAT_IDS: Tuple[int, ...] = (101, 102, 110, 118, 125)
#: ADE-style semantic classes (label value = index + 1; 0 = other).
SEMANTIC_CLASSES: Tuple[str, ...] = THING_CLASSES + STUFF_CLASSES
COLORS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 35, 35),
    'yellow': (245, 215, 30),
    'purple': (140, 50, 200),
    'orange': (250, 135, 20),
    'white': (245, 245, 245),
    'black': (25, 25, 25),
}
#: LVIS-style vocabulary: one category per colour-shape pair (30 > the usual text cap in tests).
LVIS_CLASSES: Tuple[str, ...] = tuple(f'{c}_{s}' for s in THING_CLASSES for c in COLORS)
#: Size of the >255-class label space of the 16-bit variant, and where the world's classes sit.
PC_NUM_CLASSES = 300
PC_CLASS_IDS: Tuple[int, ...] = (12, 140, 255, 256, 270, 283, 290, 296, 298, 299)
FOREGROUND_PROMPT = 'foreground'


def pc459_classes() -> List[str]:
    """The 300 class names of the 16-bit variant (world classes at :data:`PC_CLASS_IDS`)."""
    names = [f'pc_class_{i:03d}' for i in range(PC_NUM_CLASSES)]
    for cid, name in zip(PC_CLASS_IDS, SEMANTIC_CLASSES):
        names[cid] = name
    return names
