/*
 * Wingbeat family: recordings + labels → validated, split manifest → features (engineered
 * + log-mel) → one training task per requested model, in parallel → evaluation of each →
 * comparison (best by validation macro-F1) → the best model packaged as a .mar archive.
 * With a sweep (--sweep): one training task per configuration of the swept model, the
 * best by validation macro-F1 chosen (SWEEP_BEST) and only that one evaluated on test.
 */
include { WINGBEAT_VALIDATE } from '../modules/wingbeat/validate/main'
include { WINGBEAT_FEATURES } from '../modules/wingbeat/features/main'
include { WINGBEAT_TRAIN    } from '../modules/wingbeat/train/main'
include { WINGBEAT_EVALUATE } from '../modules/wingbeat/evaluate/main'
include { WINGBEAT_COMPARE  } from '../modules/wingbeat/compare/main'
include { WINGBEAT_PACKAGE  } from '../modules/wingbeat/package/main'
include { SWEEP_BEST        } from '../subworkflows/local/sweep_best/main'

workflow WINGBEAT {
    take:
    ch_input    // [ meta, labels.csv (or [] for the folder layout), data folder ]
    models      // list of model names: features, cnn, gru, transformer
    sweep       // [:] or the plan of 'insectml sweep plan': [ task, model, metric, configs ]

    main:
    ch_versions = Channel.empty()
    def sweeping = sweep as boolean

    WINGBEAT_VALIDATE ( ch_input )
    ch_versions = ch_versions.mix(WINGBEAT_VALIDATE.out.versions)

    ch_data = ch_input.map { meta, labels, data -> [ meta, data ] }
    WINGBEAT_FEATURES ( WINGBEAT_VALIDATE.out.manifest.join(ch_data) )
    ch_versions = ch_versions.mix(WINGBEAT_FEATURES.out.versions)

    // One training task per model, or per sweep configuration of the swept model.
    def configs = sweeping ? sweep.configs : [ [ id: null, params: [:] ] ]
    ch_train = WINGBEAT_FEATURES.out.features
        .combine(Channel.fromList(sweeping ? [ sweep.model ] : models))
        .combine(Channel.fromList(configs))
        .map { meta, features, model, config ->
            def m = meta + [ model: model ]
            if (config.id) {
                m += [ config: config.id, overrides: config.params, seed: config.params.seed ?: meta.seed ]
            }
            [ m, features ] }
    WINGBEAT_TRAIN ( ch_train )
    ch_versions = ch_versions.mix(WINGBEAT_TRAIN.out.versions)

    ch_sweep = Channel.empty()
    ch_candidates = WINGBEAT_TRAIN.out.model
    if (sweeping) {
        SWEEP_BEST ( WINGBEAT_TRAIN.out.model, sweep )
        ch_versions = ch_versions.mix(SWEEP_BEST.out.versions)
        ch_sweep = SWEEP_BEST.out.sweep
        ch_candidates = SWEEP_BEST.out.model
    }

    ch_evaluate = ch_candidates
        .combine(WINGBEAT_FEATURES.out.features.map { meta, features -> features })
    WINGBEAT_EVALUATE ( ch_evaluate )
    ch_versions = ch_versions.mix(WINGBEAT_EVALUATE.out.versions)

    ch_compare = ch_candidates
        .join(WINGBEAT_EVALUATE.out.evaluation)
        .map { meta, model, evaluation -> [ [ id: meta.id, family: meta.family ], model, evaluation ] }
        .groupTuple()
    WINGBEAT_COMPARE ( ch_compare, sweeping ? ch_sweep : [] )
    ch_versions = ch_versions.mix(WINGBEAT_COMPARE.out.versions)

    ch_best = WINGBEAT_COMPARE.out.best.map { meta, best -> best.text.trim() }
    ch_package = ch_candidates
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
    sweep      = ch_sweep
    versions   = ch_versions
}
