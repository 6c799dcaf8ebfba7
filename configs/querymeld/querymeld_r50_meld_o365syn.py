# Table 2's query meld on COCO panoptic + ADE20K semantic (querymeld_r50_meld.py), plus
# Objects365 boxes annotated by the synthetic data engine (paper section 3.4, appendix A.1.3):
#   box-only detection with synthetic masks  <- tools/dataset_converters/box2mask.py
#   referring on synthetic object captions   <- caption_objects.py, then filter_captions.py
# Make the two engine files (paths below, relative to o365_engine_root); with
#   B=data/objects365/annotations/zhiyuan_objv2_train.json I=data/objects365/train/
#   E=data/objects365/annotations/engine
# run:
#   python tools/dataset_converters/box2mask.py $B $I --checkpoint <SAM .pth> \
#       --out $E/masks_train.json
#   python tools/dataset_converters/caption_objects.py $B $I --model-dir <BLIP dir> \
#       --out $E/captions_train.json
#   python tools/dataset_converters/filter_captions.py $E/captions_train.json $B $I \
#       --model ViT-B-16 --pretrained <tag or file> --threshold <read off the histogram> \
#       --out $E/captions_filtered_train.json
# Boxes without a synthetic mask (dropped by box2mask) stay box-only (no mask loss); boxes whose
# captions were all filtered out are left out of the referring source (require_captions).
# Sampling: ratio_mode='repeat' draws ratio x N images of a source per epoch; with the full
# Objects365 (1.7M images) lower the engine sources' ratio (o365_engine_ratio here, or
# train_dataloader.dataset.sources[2:] in a config inheriting this one) or train by iterations.
_base_ = ['./querymeld_r50_meld.py', '../_base_/datasets/objects365_syn.py']

o365_engine_root = 'data/objects365/'
o365_engine_boxes = 'annotations/zhiyuan_objv2_train.json'
o365_engine_masks = 'annotations/engine/masks_train.json'  # box2mask output
o365_engine_captions = 'annotations/engine/captions_filtered_train.json'  # filter_captions output
o365_engine_images = 'train/'
o365_engine_ratio = 1.0

o365_engine_det_train = dict(
    name='o365_engine', task='detection', ratio=o365_engine_ratio,
    pipeline={{_base_.o365_train_pipeline}},
    dataset=dict(type='BoxCaptionDataset', data_root=o365_engine_root,
                 ann_file=o365_engine_boxes, syn_mask_file=o365_engine_masks,
                 data_prefix=dict(img=o365_engine_images),
                 filter_cfg=dict(filter_empty_gt=True)))
o365_engine_caption_train = dict(
    name='o365_engine_captions', task='referring', ratio=o365_engine_ratio,
    pipeline={{_base_.o365_caption_pipeline}},
    dataset=dict(type='BoxCaptionDataset', data_root=o365_engine_root,
                 ann_file=o365_engine_boxes, syn_mask_file=o365_engine_masks,
                 caption_file=o365_engine_captions, require_captions=True,
                 data_prefix=dict(img=o365_engine_images),
                 filter_cfg=dict(filter_empty_gt=True)))

train_dataloader = dict(
    dataset=dict(
        sources=[
            {{_base_.coco_panoptic_train}}, {{_base_.ade_semantic_train}},
            o365_engine_det_train, o365_engine_caption_train
        ]))
