/*
 * Self-supervised pretraining (--task pretrain): a folder of unlabelled images → a timm
 * backbone pretrained on them (SimCLR) → weights/<pretrain_name>/ in the layout of
 * 'insectml weights import', published to <outdir>/pretrain/weights/, for the few-shot
 * and detector families' --*_weights. One training task: pretraining learns from the
 * whole folder at once.
 */
include { PRETRAIN_TRAIN } from '../modules/pretrain/train/main'

workflow PRETRAIN {
    take:
    ch_input    // [ meta, folder of unlabelled images, weights to continue from (or []) ]

    main:
    PRETRAIN_TRAIN ( ch_input )

    emit:
    weights  = PRETRAIN_TRAIN.out.weights
    versions = PRETRAIN_TRAIN.out.versions
}
