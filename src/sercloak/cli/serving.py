"""The serving commands: keygen, export, serve, client, predict.

Each `cmd_*` turns its arguments into one call of the module that does the
work (`serving/`); `add_commands` adds their parsers to the command's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..serving.bundle import PROTECTION_FILES
from ..serving.limits import Limits
from .options import protocol_options, results_option, workdir_options


def cmd_keygen(args: argparse.Namespace) -> None:
    """A new Ed25519 key pair for signing bundles."""
    from ..serving.bundle import generate_keys, public_key_file

    public = public_key_file(args.out)
    generate_keys(args.out, public)
    print(f"wrote {args.out} (private: keep it, readable by you only) and {public} (public: "
          f"give it to the users who pin it, `--trust-key {public}`)")


def cmd_export(args: argparse.Namespace) -> None:
    """One setting of results.json as a bundle: client part, server part, manifest."""
    from ..data import Workdir
    from ..serving.export import export_bundle  # torch.onnx loads only when exporting

    manifest = export_bundle(Workdir.open(args.workdir), args.fold, args.setting, args.out,
                             args.protocol, args.seed, args.sign_key, args.results)
    measured = manifest["measured"]
    figure = measured["gender_uar_speaker"]
    print(f"wrote {args.out} (bundle_id {manifest['bundle_id']}, "
          f"{'signed' if args.sign_key else 'unsigned'}, protection "
          f"{manifest['protection']['kind']}): {args.setting}, fold {args.fold}; measured on "
          f"test speakers (mean over seeds and folds, speaker-balanced): emotion UAR "
          f"{measured['emotion_uar_speaker']['mean']}, gender UAR of the attacker chosen on "
          f"validation {figure['mean']} (chance {figure['chance']['mean']}, p = "
          f"{figure['chance']['p']}); ONNX agrees with torch within "
          f"{manifest['onnx_check']['max_abs_logit_difference']:.1e}")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(max_seconds=args.max_seconds, workers=args.inference_threads,
                  queue=args.queue, timeout_s=args.timeout, body_timeout_s=args.body_timeout,
                  body_budget_bytes=int(args.body_budget * 2**20), rate=args.rate,
                  burst=args.burst)


def cmd_serve(args: argparse.Namespace) -> None:
    """The emotion service of a bundle (FastAPI on uvicorn), in `--workers` processes."""
    from ..serving.service import serve

    serve(args.bundle, args.host, args.port, args.api_key_file, args.access_log,
          args.ssl_keyfile, args.ssl_certfile, args.workers, _limits(args), args.docs,
          tuple(args.allow_origin))


def _trust_key(args: argparse.Namespace) -> bytes | None:
    from ..serving.bundle import read_public_key

    return read_public_key(args.trust_key) if args.trust_key else None


def cmd_client(args: argparse.Namespace) -> None:
    """The page and the bundle's client part from this machine; features to `--server`."""
    from ..serving.page import serve_page

    serve_page(args.bundle, args.server, args.host, args.port, _trust_key(args),
               args.allow_unprotected, args.require_protection)


def cmd_predict(args: argparse.Namespace) -> None:
    """Cloak audio files on the client side; the emotion from the server (or locally)."""
    from ..serving.predict import predict_files

    key = None
    if args.api_key_file is not None:
        from ..serving.operations import ApiKeys

        key = ApiKeys(args.api_key_file).first()
    failed = predict_files(args.files, args.bundle, args.server, args.json, args.seed, key,
                           trust_key=_trust_key(args), allow_unprotected=args.allow_unprotected,
                           require=args.require_protection, insecure=args.insecure)
    if failed:
        sys.exit(1)


def _bundle_checks(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-key", type=Path, metavar="PUB",
                   help="refuse the bundle unless its manifest is signed by this public key "
                        "(`sercloak keygen` makes the pair; the exporter signs)")
    p.add_argument("--allow-unprotected", action="store_true",
                   help="use a bundle whose protection is missing or degenerate (its "
                        "features leave this machine unprotected)")
    p.add_argument("--require-protection", choices=sorted(PROTECTION_FILES), metavar="KIND",
                   help="refuse a bundle whose protection is not KIND (without --trust-key "
                        "the server chooses the bundle, and a weaker protection passes the "
                        f"other checks): one of {', '.join(sorted(PROTECTION_FILES))}")


def add_commands(sub) -> None:
    """The serving commands' parsers."""
    _keygen_parser(sub)
    _export_parser(sub)
    _serve_parser(sub)
    _client_parser(sub)
    _predict_parser(sub)


def _keygen_parser(sub) -> None:
    p = sub.add_parser("keygen", help="an Ed25519 key pair that signs bundles")
    p.add_argument("--out", type=Path, required=True, metavar="KEY",
                   help="the private key file (KEY.pub: the public key beside it)")
    p.set_defaults(func=cmd_keygen)


def _export_parser(sub) -> None:
    p = sub.add_parser("export", help="one setting of results.json as a bundle for a client "
                                      "and a service")
    p.add_argument("--fold", type=int, required=True, help="whose cloak and emotion model")
    p.add_argument("--setting", required=True, metavar="METHOD[:SR]",
                   help="a results.json entry, e.g. cloak_adversarial:60")
    p.add_argument("--out", type=Path, required=True, metavar="BUNDLE", help="a new folder")
    p.add_argument("--seed", type=int, help="whose seed (default: the run's first)")
    p.add_argument("--sign-key", type=Path, metavar="KEY",
                   help="sign the manifest with this private key (`sercloak keygen`)")
    workdir_options(p)
    protocol_options(p, seeds=False)
    results_option(p)
    p.set_defaults(func=cmd_export)


def _serve_parser(sub) -> None:
    p = sub.add_parser("serve", help="the emotion service of a bundle: cloaked features in, "
                                     "emotion out")
    p.add_argument("--bundle", type=Path, required=True, help="a folder written by `export`")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key-file", type=Path, metavar="FILE",
                   help="serve only requests with 'Authorization: Bearer KEY', KEY one of "
                        "the file's lines (readable by its owner only; default: anyone who "
                        "can reach the port)")
    p.add_argument("--access-log", type=Path, metavar="FILE",
                   help="append one JSON line per request here (default: stderr)")
    p.add_argument("--ssl-keyfile", type=Path, metavar="FILE", help="HTTPS: the private key")
    p.add_argument("--ssl-certfile", type=Path, metavar="FILE", help="HTTPS: the certificate")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes (default 1); metrics are summed over them")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let a page served from ORIGIN (`sercloak client`) post features "
                        "(CORS); repeat for several")
    p.add_argument("--docs", action="store_true",
                   help="serve /openapi.json (behind the key when keys are on)")
    d = Limits()
    p.add_argument("--max-seconds", type=float, default=d.max_seconds,
                   help=f"longest utterance a request may carry (default {d.max_seconds:g})")
    p.add_argument("--inference-threads", type=int, default=d.workers,
                   help=f"threads that run the model, per worker (default {d.workers})")
    p.add_argument("--queue", type=int, default=d.queue,
                   help=f"requests that may wait for them before 503 (default {d.queue})")
    p.add_argument("--timeout", type=float, default=d.timeout_s,
                   help=f"seconds a request may take, from its body's arrival, before 503 "
                        f"(default {d.timeout_s:g})")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout_s,
                   help=f"seconds a body may take to arrive before 408 (default "
                        f"{d.body_timeout_s:g})")
    p.add_argument("--body-budget", type=float, default=d.body_budget_bytes / 2**20,
                   metavar="MIB", help=f"MiB of request bodies held at once before 503 "
                                       f"(default {d.body_budget_bytes / 2**20:g})")
    p.add_argument("--rate", type=float, default=d.rate,
                   help=f"requests per second per key, sustained (default {d.rate:g})")
    p.add_argument("--burst", type=int, default=d.burst,
                   help=f"requests per key at once (default {d.burst})")
    p.set_defaults(func=cmd_serve)


def _client_parser(sub) -> None:
    p = sub.add_parser("client", help="the browser page and a bundle's client part, served "
                                      "from this machine, posting to a service")
    p.add_argument("--bundle", type=Path, required=True, help="a folder written by `export`")
    p.add_argument("--server", required=True, metavar="URL",
                   help="the emotion service, e.g. https://emotion.example.org")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    _bundle_checks(p)
    p.set_defaults(func=cmd_client)


def _predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="cloak audio files on this side, get their emotion "
                                       "from a server (or locally)")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--server", metavar="URL", help="e.g. https://emotion.example.org "
                                                   "(default: run the server part here)")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument("--seed", type=int, help="seed of the cloak's noise (default: fresh)")
    p.add_argument("--api-key-file", type=Path, metavar="FILE",
                   help="a keyed service: send the file's first key (never on the command "
                        "line, where other users and the shell history would see it)")
    p.add_argument("--insecure", action="store_true",
                   help="send the key over plain http to a host other than this machine")
    _bundle_checks(p)
    p.set_defaults(func=cmd_predict)
