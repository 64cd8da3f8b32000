/*
 * Few-shot family: images of many similar classes with a few labels each →
 * class-disjoint split (base / novel) → embedder trained on base classes (metric
 * learning) → evaluated on novel classes it never saw (prototypes, episodes, open set,
 * clusters) → archive holding the embedder and a gallery of every class.
 */
include { FEWSHOT_VALIDATE } from '../modules/fewshot/validate/main'
include { FEWSHOT_TRAIN    } from '../modules/fewshot/train/main'
include { FEWSHOT_EVALUATE } from '../modules/fewshot/evaluate/main'
include { FEWSHOT_PACKAGE  } from '../modules/fewshot/package/main'

workflow FEWSHOT {
    take:
    ch_input    // [ meta, data folder the image paths are relative to ]

    main:
    data = ch_input.map { meta, data -> data }.first()

    FEWSHOT_VALIDATE ( ch_input )
    FEWSHOT_TRAIN ( FEWSHOT_VALIDATE.out.manifest, data )
    FEWSHOT_EVALUATE ( FEWSHOT_TRAIN.out.model.join(FEWSHOT_VALIDATE.out.manifest), data )
    FEWSHOT_PACKAGE ( FEWSHOT_TRAIN.out.model.join(FEWSHOT_EVALUATE.out.gallery) )

    ch_versions = FEWSHOT_VALIDATE.out.versions.mix(
        FEWSHOT_TRAIN.out.versions, FEWSHOT_EVALUATE.out.versions, FEWSHOT_PACKAGE.out.versions)

    emit:
    model    = FEWSHOT_TRAIN.out.model
    metrics  = FEWSHOT_EVALUATE.out.metrics
    archive  = FEWSHOT_PACKAGE.out.archive
    versions = ch_versions
}
