/*
 * Few-shot family: images of many similar classes with a few labels each →
 * class-disjoint split (base / novel) → embedder trained on base classes (metric
 * learning) → evaluated on novel classes it never saw (prototypes, episodes, open set,
 * clusters) → archive holding the embedder and a gallery of every class.
 * Cross-validation (cv_folds; CV_PLAN with --unit class decides K, 0 = one train/val
 * split): the non-test classes are dealt into K folds; one training task per held-out fold
 * (a fixed budget on the other folds' classes, then the held-out classes scored) and the
 * refit on every non-test class; FEWSHOT_CV joins the folds (CV episode accuracy with its
 * t-interval, the baselines, the temperature and open-set threshold fitted on the held-out
 * classes) into the calibrated refit, which is evaluated on test and packaged.
 * With a sweep (--sweep): one training task per configuration, the best by validation
 * 5-way 1-shot accuracy chosen (SWEEP_BEST) and only that one evaluated; no CV.
 * Validation opens every image, so it runs as chunks of `chunk_size` images, one task
 * each: the labels listed (FEWSHOT_VALIDATE_LIST), each chunk checked
 * (FEWSHOT_VALIDATE_CHECK), FEWSHOT_VALIDATE gathers, reports and splits; the files are
 * the same for any chunk size.
 */
include { FEWSHOT_VALIDATE_LIST  } from '../modules/fewshot/validate_list/main'
include { FEWSHOT_VALIDATE_CHECK } from '../modules/fewshot/validate_check/main'
include { FEWSHOT_VALIDATE       } from '../modules/fewshot/validate/main'
include { CV_PLAN                } from '../modules/cv/plan/main'
include { FEWSHOT_TRAIN          } from '../modules/fewshot/train/main'
include { FEWSHOT_CV             } from '../modules/fewshot/cv/main'
include { FEWSHOT_EVALUATE       } from '../modules/fewshot/evaluate/main'
include { FEWSHOT_PACKAGE        } from '../modules/fewshot/package/main'
include { SWEEP_BEST             } from '../subworkflows/local/sweep_best/main'
include { chunks; inChunkOrder   } from '../subworkflows/local/chunks/main'

workflow FEWSHOT {
    take:
    ch_input    // [ meta, labels CSV (or [] for class folders), data folder the image paths are relative to, weights (or []), labelled active-learning export (or []) ]
    sweep       // [:] or the plan of 'insectml sweep plan': [ task, metric, configs ]
    chunk_size  // images per task of the validation checks
    cv_folds    // auto, 0 or K folds of classes (ignored with a sweep, which selects on the val split)

    main:
    def sweeping = sweep as boolean
    data = ch_input.map { meta, labels, data, weights, extra -> data }.first()
    weights = ch_input.map { meta, labels, data, weights, extra -> weights }.first()
    // A labelled active-learning export: the gather merges its rows into the training classes.
    ch_extra = ch_input.map { meta, labels, data, weights, extra -> [ meta.id, extra ] }

    // Validation scattered: the labels listed, each chunk of `chunk_size` candidates
    // checked in its own task, the chunks gathered (reported, split) in chunk order.
    FEWSHOT_VALIDATE_LIST ( ch_input.map { meta, labels, data, weights, extra -> [ meta, labels, data ] } )
    ch_check = chunks(FEWSHOT_VALIDATE_LIST.out.candidates, chunk_size, 1)
        .combine(data)
    FEWSHOT_VALIDATE_CHECK ( ch_check )
    ch_gather = FEWSHOT_VALIDATE_LIST.out.listing
        .map { meta, listing -> [ meta.id, meta, listing ] }
        .join(inChunkOrder(FEWSHOT_VALIDATE_CHECK.out.checked))
        .join(ch_extra)
        .map { id, meta, listing, checked, extra -> [ meta, listing, checked, extra ] }
    FEWSHOT_VALIDATE ( ch_gather )

    // The folds of classes: K from the plan (0 with a sweep, or when CV_PLAN says one split will do).
    CV_PLAN ( FEWSHOT_VALIDATE.out.manifest.map { meta, manifest, dataset -> [ meta, manifest ] }, sweeping ? 0 : cv_folds, 'class' )
    ch_plan = CV_PLAN.out.folds
        .map { meta, folds -> [ meta.id, folds, new groovy.json.JsonSlurper().parse(folds.toFile()).k as int ] }

    // One training task, or one per sweep configuration; with K folds, K + 1: one per
    // held-out fold and the refit.
    def configs = sweeping ? sweep.configs : [ [ id: null, params: [:] ] ]
    ch_train = FEWSHOT_VALIDATE.out.manifest
        .combine(Channel.fromList(configs))
        .map { meta, manifest, dataset, config ->
            def m = config.id ? meta + [ config: config.id, overrides: config.params, seed: config.params.seed ?: meta.seed ] : meta
            [ m.id, m, manifest, dataset ] }
        .combine(ch_plan, by: 0)
        .flatMap { id, meta, manifest, dataset, folds, k ->
            k == 0
            ? [ [ meta + [ role: 'val' ], manifest, dataset, [] ] ]
            : (0..<k).collect { [ meta + [ role: 'fold', fold: it, k: k ], manifest, dataset, folds ] } +
              [ [ meta + [ role: 'refit', k: k ], manifest, dataset, folds ] ] }
    FEWSHOT_TRAIN ( ch_train, data, weights )
    ch_versions = FEWSHOT_VALIDATE_LIST.out.versions.mix(
        FEWSHOT_VALIDATE_CHECK.out.versions, FEWSHOT_VALIDATE.out.versions, CV_PLAN.out.versions,
        FEWSHOT_TRAIN.out.versions)

    ch_trained = FEWSHOT_TRAIN.out.model.branch { meta, model ->
        fold: meta.role == 'fold'
        refit: meta.role == 'refit'
        single: true
    }
    // The folds, as soon as all K have finished, with the refit.
    ch_cv = ch_trained.refit
        .map { meta, model -> [ meta.id, meta, model ] }
        .join(
            ch_trained.fold
                .map { meta, model -> [ groupKey(meta.id, meta.k), model ] }
                .groupTuple()
                .map { key, dirs -> [ key.toString(), dirs ] }
        )
        .map { id, meta, refit, folds -> [ meta, refit, folds ] }
    FEWSHOT_CV ( ch_cv )
    ch_versions = ch_versions.mix(FEWSHOT_CV.out.versions)

    ch_model = ch_trained.single.mix(FEWSHOT_CV.out.model)
    ch_sweep = Channel.empty()
    if (sweeping) {
        SWEEP_BEST ( ch_trained.single, sweep )
        ch_versions = ch_versions.mix(SWEEP_BEST.out.versions)
        ch_sweep = SWEEP_BEST.out.sweep
        ch_model = SWEEP_BEST.out.model
    }

    // Only the chosen model meets the test classes.
    ch_manifest = FEWSHOT_VALIDATE.out.manifest.map { meta, manifest, dataset -> [ manifest, dataset ] }
    FEWSHOT_EVALUATE ( ch_model.combine(ch_manifest), data, sweeping ? ch_sweep : [] )
    FEWSHOT_PACKAGE ( ch_model.join(FEWSHOT_EVALUATE.out.gallery) )
    ch_versions = ch_versions.mix(FEWSHOT_EVALUATE.out.versions, FEWSHOT_PACKAGE.out.versions)

    emit:
    model    = ch_model
    best     = ch_model.join(FEWSHOT_EVALUATE.out.gallery)  // [ meta, model, gallery ]: the one packaged
    folds    = CV_PLAN.out.folds
    metrics  = FEWSHOT_EVALUATE.out.metrics
    archive  = FEWSHOT_PACKAGE.out.archive
    sweep    = ch_sweep
    versions = ch_versions
}
