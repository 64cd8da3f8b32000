/*
 * Wingbeat family: recordings + labels → validated, split manifest → features (engineered
 * + log-mel) → one training task per requested model, in parallel → evaluation of each →
 * comparison (best by validation macro-F1) → the best model packaged as a .mar archive.
 */
include { WINGBEAT_VALIDATE } from '../modules/wingbeat/validate/main'
include { WINGBEAT_FEATURES } from '../modules/wingbeat/features/main'
include { WINGBEAT_TRAIN    } from '../modules/wingbeat/train/main'
include { WINGBEAT_EVALUATE } from '../modules/wingbeat/evaluate/main'
include { WINGBEAT_COMPARE  } from '../modules/wingbeat/compare/main'
include { WINGBEAT_PACKAGE  } from '../modules/wingbeat/package/main'

workflow WINGBEAT {
    take:
    ch_input    // [ meta, labels.csv (or [] for the folder layout), data folder ]
    models      // list of model names: features, cnn, gru, transformer

    main:
    ch_versions = Channel.empty()

    WINGBEAT_VALIDATE ( ch_input )
    ch_versions = ch_versions.mix(WINGBEAT_VALIDATE.out.versions)

    ch_data = ch_input.map { meta, labels, data -> [ meta, data ] }
    WINGBEAT_FEATURES ( WINGBEAT_VALIDATE.out.manifest.join(ch_data) )
    ch_versions = ch_versions.mix(WINGBEAT_FEATURES.out.versions)

    ch_train = WINGBEAT_FEATURES.out.features
        .combine(Channel.fromList(models))
        .map { meta, features, model -> [ meta + [ model: model ], features ] }
    WINGBEAT_TRAIN ( ch_train )
    ch_versions = ch_versions.mix(WINGBEAT_TRAIN.out.versions)

    ch_evaluate = WINGBEAT_TRAIN.out.model
        .combine(WINGBEAT_FEATURES.out.features.map { meta, features -> features })
    WINGBEAT_EVALUATE ( ch_evaluate )
    ch_versions = ch_versions.mix(WINGBEAT_EVALUATE.out.versions)

    ch_compare = WINGBEAT_TRAIN.out.model
        .join(WINGBEAT_EVALUATE.out.evaluation)
        .map { meta, model, evaluation -> [ meta.findAll { it.key != 'model' }, model, evaluation ] }
        .groupTuple()
    WINGBEAT_COMPARE ( ch_compare )
    ch_versions = ch_versions.mix(WINGBEAT_COMPARE.out.versions)

    ch_best = WINGBEAT_COMPARE.out.best.map { meta, best -> best.text.trim() }
    ch_package = WINGBEAT_TRAIN.out.model
        .combine(ch_best)
        .filter { meta, model, best -> meta.model == best }
        .map { meta, model, best -> [ meta, model ] }
    WINGBEAT_PACKAGE ( ch_package )
    ch_versions = ch_versions.mix(WINGBEAT_PACKAGE.out.versions)

    emit:
    manifest   = WINGBEAT_VALIDATE.out.manifest
    model      = WINGBEAT_TRAIN.out.model
    metrics    = WINGBEAT_EVALUATE.out.metrics
    comparison = WINGBEAT_COMPARE.out.comparison
    archive    = WINGBEAT_PACKAGE.out.archive
    versions   = ch_versions
}
