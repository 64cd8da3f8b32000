/*
 * Wingbeat family: recordings + labels CSV → validated, split manifest → features
 * → one model per requested classifier → evaluation → .mar archive.
 */
include { WINGBEAT_VALIDATE } from '../modules/wingbeat/validate/main'
include { WINGBEAT_FEATURES } from '../modules/wingbeat/features/main'
include { WINGBEAT_TRAIN    } from '../modules/wingbeat/train/main'
include { WINGBEAT_EVALUATE } from '../modules/wingbeat/evaluate/main'
include { WINGBEAT_PACKAGE  } from '../modules/wingbeat/package/main'

workflow WINGBEAT {
    take:
    ch_input    // [ meta, labels.csv, data folder ]
    model_name  // classical model on engineered features, e.g. 'random_forest'

    main:
    ch_versions = Channel.empty()

    WINGBEAT_VALIDATE ( ch_input )
    ch_versions = ch_versions.mix(WINGBEAT_VALIDATE.out.versions)

    ch_data = ch_input.map { meta, labels, data -> [ meta, data ] }
    WINGBEAT_FEATURES ( WINGBEAT_VALIDATE.out.manifest.join(ch_data) )
    ch_versions = ch_versions.mix(WINGBEAT_FEATURES.out.versions)

    ch_train = WINGBEAT_FEATURES.out.features
        .map { meta, features -> [ meta + [ model: model_name ], features ] }
    WINGBEAT_TRAIN ( ch_train )
    ch_versions = ch_versions.mix(WINGBEAT_TRAIN.out.versions)

    ch_evaluate = WINGBEAT_TRAIN.out.model
        .combine(WINGBEAT_FEATURES.out.features.map { meta, features -> features })
    WINGBEAT_EVALUATE ( ch_evaluate )
    ch_versions = ch_versions.mix(WINGBEAT_EVALUATE.out.versions)

    WINGBEAT_PACKAGE ( WINGBEAT_TRAIN.out.model )
    ch_versions = ch_versions.mix(WINGBEAT_PACKAGE.out.versions)

    emit:
    manifest = WINGBEAT_VALIDATE.out.manifest
    model    = WINGBEAT_TRAIN.out.model
    metrics  = WINGBEAT_EVALUATE.out.metrics
    archive  = WINGBEAT_PACKAGE.out.archive
    versions = ch_versions
}
