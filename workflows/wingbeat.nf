/*
 * Wingbeat family: recordings + labels → validated, split manifest → features (engineered
 * + log-mel) → one training task per requested model and the baseline, in parallel →
 * evaluation of each → comparison (the best, and whether it beats the baseline) → the best
 * model packaged as a .mar archive.
 * Cross-validation (cv_folds; CV_PLAN decides K, 0 = one train/val split): each model is
 * trained once per fold (every model × fold its own task) and once on all non-test data
 * (the refit); WINGBEAT_CV joins a model's folds into its out-of-fold metrics and
 * calibrates its refit on them; the refits are evaluated and the best by CV is packaged.
 * With a sweep (--sweep): one training task per configuration of the swept model, the
 * best by validation macro-F1 chosen (SWEEP_BEST) and only that one evaluated on test.
 *
 * The steps that open every recording run as chunks of `chunk_size` recordings, one task
 * each, gathered in chunk order: the labels are listed (WINGBEAT_VALIDATE_LIST), each
 * chunk of candidates is decoded and checked (WINGBEAT_VALIDATE_CHECK), WINGBEAT_VALIDATE
 * gathers them, reports every problem and splits; each chunk of the manifest gets its
 * features (WINGBEAT_FEATURES), WINGBEAT_FEATURES_GATHER joins them. The files are the
 * same for any chunk size.
 */
include { WINGBEAT_VALIDATE_LIST   } from '../modules/wingbeat/validate_list/main'
include { WINGBEAT_VALIDATE_CHECK  } from '../modules/wingbeat/validate_check/main'
include { WINGBEAT_VALIDATE        } from '../modules/wingbeat/validate/main'
include { WINGBEAT_FEATURES        } from '../modules/wingbeat/features/main'
include { WINGBEAT_FEATURES_GATHER } from '../modules/wingbeat/features_gather/main'
include { CV_PLAN                  } from '../modules/cv/plan/main'
include { WINGBEAT_TRAIN           } from '../modules/wingbeat/train/main'
include { WINGBEAT_CV              } from '../modules/wingbeat/cv/main'
include { WINGBEAT_EVALUATE        } from '../modules/wingbeat/evaluate/main'
include { WINGBEAT_COMPARE         } from '../modules/wingbeat/compare/main'
include { WINGBEAT_PACKAGE         } from '../modules/wingbeat/package/main'
include { SWEEP_BEST               } from '../subworkflows/local/sweep_best/main'
include { chunks; inChunkOrder      } from '../subworkflows/local/chunks/main'

workflow WINGBEAT {
    take:
    ch_input    // [ meta, labels.csv (or [] for the folder layout), data folder, weights (or []), labelled active-learning export (or []) ]
    models      // list of model names: features, cnn, gru, transformer (the baseline is always added)
    sweep       // [:] or the plan of 'insectml sweep plan': [ task, model, metric, configs ]
    chunk_size  // recordings per task of the checks and the features
    cv_folds    // auto, 0 or K (ignored with a sweep, which selects on the val split)

    main:
    ch_versions = Channel.empty()
    def sweeping = sweep as boolean
    ch_data = ch_input.map { meta, labels, data, weights, extra -> [ meta.id, data ] }
    // The weights the neural models start from; the other models read none, so that a new
    // weights file reruns only the nets' training.
    ch_weights = ch_input.map { meta, labels, data, weights, extra -> [ meta.id, weights ] }
    // A labelled active-learning export: the gather merges its rows into the train split.
    ch_extra = ch_input.map { meta, labels, data, weights, extra -> [ meta.id, extra ] }
    def fromWeights = { model -> !(model in [ 'baseline', 'rocket', 'features' ]) }

    WINGBEAT_VALIDATE_LIST ( ch_input.map { meta, labels, data, weights, extra -> [ meta, labels, data ] } )
    ch_versions = ch_versions.mix(WINGBEAT_VALIDATE_LIST.out.versions)

    ch_check = chunks(WINGBEAT_VALIDATE_LIST.out.candidates, chunk_size, 1)
        .map { meta, candidates -> [ meta.id, meta, candidates ] }
        .combine(ch_data, by: 0)
        .map { id, meta, candidates, data -> [ meta, candidates, data ] }
    WINGBEAT_VALIDATE_CHECK ( ch_check )
    ch_versions = ch_versions.mix(WINGBEAT_VALIDATE_CHECK.out.versions)

    ch_gather = WINGBEAT_VALIDATE_LIST.out.listing
        .map { meta, listing -> [ meta.id, meta, listing ] }
        .join(inChunkOrder(WINGBEAT_VALIDATE_CHECK.out.checked))
        .join(ch_extra)
        .map { id, meta, listing, checked, extra -> [ meta, listing, checked, extra ] }
    WINGBEAT_VALIDATE ( ch_gather )
    ch_versions = ch_versions.mix(WINGBEAT_VALIDATE.out.versions)

    ch_features = chunks(WINGBEAT_VALIDATE.out.manifest, chunk_size, 1)
        .map { meta, manifest, dataset -> [ meta.id, meta, manifest, dataset ] }
        .combine(ch_data, by: 0)
        .map { id, meta, manifest, dataset, data -> [ meta, manifest, dataset, data ] }
    WINGBEAT_FEATURES ( ch_features )
    ch_versions = ch_versions.mix(WINGBEAT_FEATURES.out.versions)

    ch_parts = WINGBEAT_VALIDATE.out.manifest
        .map { meta, manifest, dataset -> [ meta.id, meta, manifest ] }
        .join(inChunkOrder(WINGBEAT_FEATURES.out.features))
        .map { id, meta, manifest, parts -> [ meta, manifest, parts ] }
    WINGBEAT_FEATURES_GATHER ( ch_parts )
    ch_versions = ch_versions.mix(WINGBEAT_FEATURES_GATHER.out.versions)
    ch_features_npz = WINGBEAT_FEATURES_GATHER.out.features

    // The folds: K from the plan (0 with a sweep, or when CV_PLAN says one split will do).
    CV_PLAN ( WINGBEAT_VALIDATE.out.manifest.map { meta, manifest, dataset -> [ meta, manifest ] }, sweeping ? 0 : cv_folds, 'group' )
    ch_versions = ch_versions.mix(CV_PLAN.out.versions)
    ch_plan = CV_PLAN.out.folds
        .map { meta, folds -> [ meta.id, folds, new groovy.json.JsonSlurper().parse(folds.toFile()).k as int ] }

    // One training task per model (and the baseline), or per sweep configuration of the
    // swept model; with K folds, K + 1 per model: one per held-out fold and the refit.
    def configs = sweeping ? sweep.configs : [ [ id: null, params: [:] ] ]
    ch_train = ch_features_npz
        .combine(Channel.fromList(sweeping ? [ sweep.model ] : (models + [ 'baseline' ]).unique()))
        .combine(Channel.fromList(configs))
        .map { meta, features, model, config ->
            def m = meta + [ model: model ]
            if (config.id) {
                m += [ config: config.id, overrides: config.params, seed: config.params.seed ?: meta.seed ]
            }
            [ m.id, m, features ] }
        .combine(ch_plan, by: 0)
        .combine(ch_weights, by: 0)
        .flatMap { id, meta, features, folds, k, weights ->
            def w = fromWeights(meta.model) ? weights : []
            k == 0
            ? [ [ meta + [ role: 'val' ], features, [], w ] ]
            : (0..<k).collect { [ meta + [ role: 'fold', fold: it, k: k ], features, folds, w ] } +
              [ [ meta + [ role: 'refit', k: k ], features, folds, w ] ] }
    WINGBEAT_TRAIN ( ch_train )
    ch_versions = ch_versions.mix(WINGBEAT_TRAIN.out.versions)

    ch_trained = WINGBEAT_TRAIN.out.model.branch { meta, model ->
        fold: meta.role == 'fold'
        refit: meta.role == 'refit'
        single: true
    }
    // A model's folds, as soon as its K have finished, with its refit.
    ch_cv = ch_trained.refit
        .map { meta, model -> [ "${meta.id}:${meta.model}".toString(), meta, model ] }
        .join(
            ch_trained.fold
                .map { meta, model -> [ groupKey("${meta.id}:${meta.model}".toString(), meta.k), model ] }
                .groupTuple()
                .map { key, dirs -> [ key.toString(), dirs ] }
        )
        .map { key, meta, refit, folds -> [ meta, refit, folds ] }
    WINGBEAT_CV ( ch_cv )
    ch_versions = ch_versions.mix(WINGBEAT_CV.out.versions)

    ch_sweep = Channel.empty()
    ch_candidates = ch_trained.single.mix(WINGBEAT_CV.out.model)
    if (sweeping) {
        SWEEP_BEST ( ch_trained.single, sweep )
        ch_versions = ch_versions.mix(SWEEP_BEST.out.versions)
        ch_sweep = SWEEP_BEST.out.sweep
        ch_candidates = SWEEP_BEST.out.model
    }

    ch_evaluate = ch_candidates
        .combine(ch_features_npz.map { meta, features -> features })
    WINGBEAT_EVALUATE ( ch_evaluate )
    ch_versions = ch_versions.mix(WINGBEAT_EVALUATE.out.versions)

    ch_compare = ch_candidates
        .join(WINGBEAT_EVALUATE.out.evaluation)
        .map { meta, model, evaluation -> [ [ id: meta.id, family: meta.family, seed: meta.seed ], model, evaluation ] }
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
    model      = ch_candidates
    best       = ch_package           // [ meta, model ]: the chosen model, the one packaged
    folds      = CV_PLAN.out.folds
    metrics    = WINGBEAT_EVALUATE.out.metrics
    comparison = WINGBEAT_COMPARE.out.comparison
    archive    = WINGBEAT_PACKAGE.out.archive
    sweep      = ch_sweep
    versions   = ch_versions
}
