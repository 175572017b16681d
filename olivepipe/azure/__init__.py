"""Azure integration, one job per module.

* :mod:`.errors` - :class:`RegistrationError` and the mapping of SDK exceptions onto it.
* :mod:`.redact` - scrub secret-looking values from anything shown or written.
* :mod:`.workspace` - subscription / resource group / workspace from node options, env, config.json.
* :mod:`.credentials` - bounded ``DefaultAzureCredential`` check (:func:`check_credentials`).
* :mod:`.sdk` - calling the SDK: time bound, quiet redacted logging, lazy azure-ai-ml import.
* :mod:`.registration` - the ``register`` node: Model entity, ``create_or_update``, ``run_register``.

Nothing is imported here, so ``import olivepipe.azure.workspace`` loads neither azure-ai-ml
nor the registration code (``import azure.ai.ml`` alone takes 1-1.5 s).
"""
