/*
 * Few-shot family: images of many similar classes with a few labels each →
 * class-disjoint split (base / novel) → embedder trained on base classes (metric
 * learning) → evaluated on novel classes it never saw (prototypes, episodes, open set,
 * clusters) → archive holding the embedder and a gallery of every class.
 * With a sweep (--sweep): one training task per configuration, the best by validation
 * 5-way 1-shot accuracy chosen (SWEEP_BEST) and only that one evaluated.
 * Validation opens every image, so it runs as chunks of `chunk_size` images, one task
 * each: the labels listed (FEWSHOT_VALIDATE_LIST), each chunk checked
 * (FEWSHOT_VALIDATE_CHECK), FEWSHOT_VALIDATE gathers, reports and splits; the files are
 * the same for any chunk size.
 */
include { FEWSHOT_VALIDATE_LIST  } from '../modules/fewshot/validate_list/main'
include { FEWSHOT_VALIDATE_CHECK } from '../modules/fewshot/validate_check/main'
include { FEWSHOT_VALIDATE       } from '../modules/fewshot/validate/main'
include { FEWSHOT_TRAIN          } from '../modules/fewshot/train/main'
include { FEWSHOT_EVALUATE       } from '../modules/fewshot/evaluate/main'
include { FEWSHOT_PACKAGE        } from '../modules/fewshot/package/main'
include { SWEEP_BEST             } from '../subworkflows/local/sweep_best/main'
include { chunks; inChunkOrder   } from '../subworkflows/local/chunks/main'

workflow FEWSHOT {
    take:
    ch_input    // [ meta, data folder the image paths are relative to ]
    sweep       // [:] or the plan of 'insectml sweep plan': [ task, metric, configs ]
    chunk_size  // images per task of the validation checks

    main:
    def sweeping = sweep as boolean
    data = ch_input.map { meta, data -> data }.first()

    // Validation scattered: the labels listed, each chunk of `chunk_size` candidates
    // checked in its own task, the chunks gathered (reported, split) in chunk order.
    FEWSHOT_VALIDATE_LIST ( ch_input )
    ch_check = chunks(FEWSHOT_VALIDATE_LIST.out.candidates, chunk_size, 1)
        .combine(data)
    FEWSHOT_VALIDATE_CHECK ( ch_check )
    ch_gather = FEWSHOT_VALIDATE_LIST.out.listing
        .map { meta, listing -> [ meta.id, meta, listing ] }
        .join(inChunkOrder(FEWSHOT_VALIDATE_CHECK.out.checked))
        .map { id, meta, listing, checked -> [ meta, listing, checked ] }
    FEWSHOT_VALIDATE ( ch_gather )

    // One training task, or one per sweep configuration.
    def configs = sweeping ? sweep.configs : [ [ id: null, params: [:] ] ]
    ch_train = FEWSHOT_VALIDATE.out.manifest
        .combine(Channel.fromList(configs))
        .map { meta, manifest, dataset, config ->
            def m = config.id ? meta + [ config: config.id, overrides: config.params, seed: config.params.seed ?: meta.seed ] : meta
            [ m, manifest, dataset ] }
    FEWSHOT_TRAIN ( ch_train, data )
    ch_versions = FEWSHOT_VALIDATE_LIST.out.versions.mix(
        FEWSHOT_VALIDATE_CHECK.out.versions, FEWSHOT_VALIDATE.out.versions, FEWSHOT_TRAIN.out.versions)

    ch_model = FEWSHOT_TRAIN.out.model
    ch_sweep = Channel.empty()
    if (sweeping) {
        SWEEP_BEST ( FEWSHOT_TRAIN.out.model, sweep )
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
    metrics  = FEWSHOT_EVALUATE.out.metrics
    archive  = FEWSHOT_PACKAGE.out.archive
    sweep    = ch_sweep
    versions = ch_versions
}
